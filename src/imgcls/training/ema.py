"""``--ema``: an exponential moving average of the weights (timm's ModelEmaV3), as a Lightning callback.

Each epoch the averaged weights are validated too, and the better of the two is what that epoch
stands for: its ``val_acc`` in metrics.json and the weights best.pt/last.pt hold (the checkpoint's
``imgcls.ema`` says which). So predict, evaluate, export and serve use whatever validation favoured,
with no second state dict to choose from. The training weights themselves carry on unaveraged: they
are kept in this callback's state inside last.pt and put back when the next epoch (or --resume) starts.
"""

from __future__ import annotations

import logging
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from timm.utils import ModelEmaV3

log = logging.getLogger(__name__)


def _clone_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


class WeightAveraging(Callback):
    """Keeps the EMA, validates it each epoch and swaps it in for the checkpoints when it scores higher."""

    def __init__(self, decay: float = 0.999):
        self.decay = decay
        self.ema: ModelEmaV3 | None = None
        self.ema_won = False
        self._scores = (0.0, 0.0)  # (accuracy, loss) of the EMA at the last validation
        self._live: dict[str, torch.Tensor] | None = None  # training weights while the EMA sits in the model
        self._restored: dict[str, Any] | None = None
        self._last_step = -1

    # state (rides in last.pt) -------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"ema": self.ema.module.state_dict() if self.ema else None, "live": self._live}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._restored = state

    # training -------------------------------------------------------------------------------------
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Warm-up makes the average useful for short fine-tunes: decay grows towards ``decay`` with the steps.
        self.ema = ModelEmaV3(pl_module.model, decay=self.decay, use_warmup=True)
        self._last_step = trainer.global_step
        if self._restored:
            if self._restored.get("ema"):
                self.ema.module.load_state_dict(self._restored["ema"])
            self._live = self._restored.get("live")
            self._restored = None

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._put_back_live(pl_module)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self.ema is not None and trainer.global_step != self._last_step:  # an optimizer step happened
            self._last_step = trainer.global_step
            self.ema.update(pl_module.model, step=trainer.global_step)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._put_back_live(pl_module)

    def _put_back_live(self, pl_module: pl.LightningModule) -> None:
        if self._live is not None:
            pl_module.model.load_state_dict(self._live)
            self._live = None

    # validation -----------------------------------------------------------------------------------
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or self.ema is None or "val_acc" not in trainer.callback_metrics:
            return
        live_acc = float(trainer.callback_metrics["val_acc"])
        ema_acc, ema_loss = self._validate_average(trainer, pl_module)
        self.ema_won = ema_acc >= live_acc - 1e-6  # ties go to the average (torchmetrics counts in float32)
        self._scores = (ema_acc, ema_loss)
        for logger in trainer.loggers:
            logger.log_metrics({"val_acc_ema": ema_acc, "val_loss_ema": ema_loss, "val_acc_live": live_acc},
                               step=trainer.global_step)
        # no epoch number: the stage's count restarts at 1, and the epoch line that follows gives the run's
        log.info("EMA: val_acc %.4f training weights, %.4f EMA -> %s kept", live_acc, ema_acc,
                 "EMA" if self.ema_won else "training weights")

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Before RunHistory (this callback comes first) and the checkpoint callbacks (Lightning calls those
        # last). Not in on_validation_end: while validation runs, Lightning refills callback_metrics from its
        # own results on every read.
        pl_module.meta["ema"] = self.ema_won
        if self.ema_won and self.ema is not None:
            ema_acc, ema_loss = self._scores
            trainer.callback_metrics["val_acc"] = torch.tensor(ema_acc)
            trainer.callback_metrics["val_loss"] = torch.tensor(ema_loss)
            self._live = _clone_state(pl_module.model)
            pl_module.model.load_state_dict(self.ema.module.state_dict())

    @torch.no_grad()
    def _validate_average(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> tuple[float, float]:
        """Accuracy and loss of the EMA on the val loader, through the module's own forward."""
        assert self.ema is not None
        live = _clone_state(pl_module.model)
        modes = {m: m.training for m in pl_module.modules()}
        pl_module.model.load_state_dict(self.ema.module.state_dict())
        pl_module.eval()
        loaders = trainer.val_dataloaders
        # the per-batch step Lightning runs after moving a batch (normalising the decoded cache's uint8 pixels)
        transfer = (trainer.datamodule or pl_module).on_after_batch_transfer
        correct = total = 0
        loss_sum = torch.zeros((), device=pl_module.device)
        try:
            for loader in loaders if isinstance(loaders, (list, tuple)) else [loaders]:
                for x, y in loader:
                    x, y = transfer((x.to(pl_module.device), y.to(pl_module.device)), 0)
                    with trainer.precision_plugin.val_step_context():
                        logits = pl_module(x).float()
                    loss_sum += F.cross_entropy(logits, y, reduction="sum")
                    correct += int((logits.argmax(-1) == y).sum())
                    total += len(y)
        finally:
            pl_module.model.load_state_dict(live)
            for module, training in modes.items():
                module.train(training)
        counts = trainer.strategy.reduce(torch.tensor([correct, total], dtype=torch.float64,
                                                      device=pl_module.device), reduce_op="sum")
        loss = trainer.strategy.reduce(loss_sum, reduce_op="sum")
        return float(counts[0] / counts[1].clamp(min=1)), float(loss / counts[1].clamp(min=1))


def ema_callbacks(config: Any) -> list[Callback]:
    """The callbacks ``--ema`` asks for (none without it); they must come before RunHistory in the list."""
    return [WeightAveraging(config.ema_decay)] if getattr(config, "ema", False) else []
