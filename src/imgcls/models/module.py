"""The LightningModule: the network, its loss, metrics, optimizer and schedule.

Loop, devices and precision belong to the Trainer; data to the DataModule; policy (checkpoints,
history, early stopping) to callbacks. Hyper-parameters are saved as plain dicts so every checkpoint
loads with ``weights_only=True``.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from timm.data import Mixup
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from imgcls.models.metadata import CHECKPOINT_FORMAT
from imgcls.models.chunked import forward_in_slices
from imgcls.models.factory import embed
from imgcls.models.onecycle import is_step_scheduler, one_cycle
from imgcls.models.prefix import FrozenPrefix
from imgcls.models.recipe import Recipe


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy against soft targets (Mixup/CutMix), optionally class-weighted."""
    loss = -(target * F.log_softmax(logits.float(), dim=-1)).sum(-1)
    if weight is not None:
        loss = loss * (target * weight).sum(-1)
    return loss.mean()


class ClassifierModule(pl.LightningModule):
    """Trains ``model`` on (image, label) batches, or its head alone on (embedding, label) batches.

    ``meta`` is the checkpoint metadata (architecture, classes, preprocessing); ``recipe`` the
    optimisation and stage settings (:class:`~imgcls.models.recipe.Recipe`; a dict saved by an older
    checkpoint is read as one). Checkpoints always hold the whole model.
    """

    def __init__(self, model: nn.Module, meta: dict[str, Any], recipe: Recipe | dict[str, Any]):
        super().__init__()
        self.model = model
        self.meta = meta
        self.recipe = recipe if isinstance(recipe, Recipe) else Recipe.from_dict(recipe)
        self.save_hyperparameters({"meta": meta, "recipe": self.recipe.to_dict()})
        num_classes = len(meta["classes"])
        weights = self.recipe.class_weights
        self.register_buffer("class_weights", torch.tensor(weights, dtype=torch.float32) if weights else None,
                             persistent=False)
        self.mixup = None
        if self.recipe.mixup > 0 or self.recipe.cutmix > 0:
            self.mixup = Mixup(mixup_alpha=self.recipe.mixup, cutmix_alpha=self.recipe.cutmix,
                               label_smoothing=self.recipe.label_smoothing, num_classes=num_classes)
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        # set by training (training/callbacks.py ValOutputs): validation_step returns each batch's embeddings,
        # logits and labels, so the best epoch's need not be computed again after training
        self.keep_val_outputs = False
        self._frozen_prefix: FrozenPrefix | bool | None = None  # models/prefix.py; False: the network has none

    @property
    def on_features(self) -> bool:
        return self.recipe.inputs == "features"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.get_classifier()(x) if self.on_features else self.model(x)

    def setup(self, stage: str) -> None:
        # which layers are frozen is this fit's (a stage's) own: the val cache is made afresh at its first batch
        self._frozen_prefix = None
        if stage == "fit" and not self.on_features:
            # NHWC convolutions: ~1.8x faster training steps on CPU, and what tensor cores want on GPU. Here,
            # before the strategy wraps the model: DDP lays out its gradient buckets by the parameters' strides.
            self.model.to(memory_format=torch.channels_last)

    @staticmethod
    def _channels_last(x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if x.ndim == 4 else x

    # steps --------------------------------------------------------------------------------------
    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = self._channels_last(batch[0]), batch[1]
        if self.mixup is not None and len(y) % 2 == 0:  # timm's batch Mixup pairs samples: even sizes only
            x, soft = self.mixup(x, y)
            logits = self(x)
            loss = soft_cross_entropy(logits, soft, self.class_weights)
        else:
            logits = self(x)
            loss = F.cross_entropy(logits.float(), y, weight=self.class_weights,
                                   label_smoothing=self.recipe.label_smoothing)
        self.train_acc(logits.detach(), y)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(y), sync_dist=True)
        self.log("train_acc", self.train_acc, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(y))
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor] | None:
        x, y = self._channels_last(batch[0]), batch[1]
        on_cpu = x.device.type == "cpu" and not self.on_features
        if on_cpu and self._frozen_prefix is None:
            self._frozen_prefix = FrozenPrefix.of(self.model, x) or False
        features = None
        if self._frozen_prefix:  # a frozen prefix's output on this batch is computed once per fit
            features = self._frozen_prefix.embed(x, batch_idx)
            logits = self.model.get_classifier()(features)
        elif self.keep_val_outputs:  # the same logits, through the pooled embeddings (timm's interface)
            features = forward_in_slices(partial(embed, self.model), x, on_cpu)
            logits = self.model.get_classifier()(features)
        else:
            logits = forward_in_slices(self, x, on_cpu)
        loss = F.cross_entropy(logits.float(), y)
        self.val_acc(logits, y)
        self.log("val_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(y), sync_dist=True)
        self.log("val_acc", self.val_acc, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(y))
        if not self.keep_val_outputs:
            return None
        return {"features": features, "logits": logits, "labels": y}

    def on_train_epoch_start(self) -> None:
        if self.recipe.frozen:
            # A frozen backbone stays in eval mode: its BatchNorm statistics must not drift either.
            self.model.eval()
            self.model.get_classifier().train()
        else:
            # Small data (freeze_bn): batch statistics of a few dozen photos are noisier than the pretrained ones,
            # and replacing them undoes what a trained head relies on; the BatchNorm weights still train. A layer
            # that does not train (early blocks kept frozen) keeps its statistics in any case.
            for layer in self.model.modules():
                if isinstance(layer, nn.modules.batchnorm._BatchNorm) and (self.recipe.freeze_bn or (
                        layer.affine and not layer.weight.requires_grad)):
                    layer.eval()

    # optimisation ---------------------------------------------------------------------------------
    def configure_optimizers(self) -> dict[str, Any]:
        r = self.recipe
        layer_decay = r.layer_decay
        if layer_decay is not None and (layer_decay >= 1.0 or not hasattr(self.model, "group_matcher")):
            layer_decay = None  # one rate for all (no layer groups known for scratch nets)
        optimizer = create_optimizer_v2(self.model, opt=r.optimizer, lr=r.lr, weight_decay=r.weight_decay,
                                        momentum=r.momentum, layer_decay=layer_decay)
        if r.scheduler == "onecycle":
            return one_cycle(optimizer, r, int(self.trainer.estimated_stepping_batches))
        # "none" is timm's constant schedule: the rate stays put after any warm-up, and timm schedulers
        # are what apply the per-layer rates (lr_scale) of layer decay. The warm-up comes before the
        # schedule proper, so cosine starts its decay from the full rate and ends with the run.
        warmup = min(r.warmup_epochs, r.epochs - 1)
        # step: x0.1 every third of the run. wsd: the rate holds, then decays over the last fifth; timm's decay
        # phase opens at the full rate, so it needs two epochs for the rate to fall within the run.
        steady = r.epochs - warmup
        decay_epochs = min(steady, max(2, round(0.2 * steady))) if r.scheduler == "wsd" else max(1, r.epochs // 3)
        scheduler, _ = create_scheduler_v2(
            optimizer, sched="constant" if r.scheduler == "none" else r.scheduler,
            num_epochs=r.epochs - warmup, warmup_epochs=warmup, warmup_prefix=True,
            warmup_lr=r.lr * 0.01, min_lr=r.lr * 0.01, decay_epochs=decay_epochs,
            patience_epochs=max(1, r.epochs // 10), plateau_mode="max")
        return {"optimizer": optimizer, "lr_scheduler": {
            "scheduler": scheduler, "interval": "epoch", "monitor": "val_acc",
            "reduce_on_plateau": r.scheduler == "plateau"}}

    def lr_scheduler_step(self, scheduler: Any, metric: Any) -> None:
        if is_step_scheduler(scheduler):
            scheduler.step()
            return
        # timm schedulers take the epoch about to start (and the monitored value for plateau).
        scheduler.step(epoch=self.current_epoch + 1, metric=metric)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        val_acc = self.trainer.callback_metrics.get("val_acc") if self._trainer is not None else None
        checkpoint[CHECKPOINT_FORMAT] = {**self.meta, "epoch": self.recipe.epoch_offset + self.current_epoch + 1,
                              "val_acc": float(val_acc) if val_acc is not None else None}
