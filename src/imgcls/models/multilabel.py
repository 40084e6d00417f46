"""Multi-label training: one sigmoid per class, binary cross-entropy, set-level metrics.

``val_acc`` is the exact-match ratio: the share of val images whose predicted label set (each sigmoid over
0.5) is exactly the true set. ``val_f1`` (macro F1 at 0.5) and ``val_map`` (mean average precision) are
logged beside it; best.pt and early stopping follow ``val_map``, which needs no threshold and moves
smoothly, where the exact-match ratio of a small val split jumps in steps and ties.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchmetrics.classification import MultilabelAveragePrecision, MultilabelExactMatch, MultilabelF1Score

from imgcls.models.chunked import forward_in_slices
from imgcls.models.module import ClassifierModule


class MultiLabelModule(ClassifierModule):
    """:class:`ClassifierModule` with multi-hot targets (N, classes) and sigmoid outputs."""

    def __init__(self, model, meta, recipe):  # noqa: ANN001 - as ClassifierModule
        super().__init__(model, meta, recipe)
        num_labels = len(meta["classes"])
        self.train_acc = MultilabelExactMatch(num_labels)
        self.val_acc = MultilabelExactMatch(num_labels)
        self.val_f1 = MultilabelF1Score(num_labels, average="macro")
        self.val_map = MultilabelAveragePrecision(num_labels, average="macro")

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = self._channels_last(batch[0]), batch[1]
        logits = self(x)
        loss = F.binary_cross_entropy_with_logits(logits.float(), y.float())
        self.train_acc(torch.sigmoid(logits.detach()), y.long())
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(y), sync_dist=True)
        self.log("train_acc", self.train_acc, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(y))
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = self._channels_last(batch[0]), batch[1]
        logits = forward_in_slices(self, x, x.device.type == "cpu" and not self.on_features).float()
        loss = F.binary_cross_entropy_with_logits(logits, y.float())
        for metric in (self.val_acc, self.val_f1, self.val_map):
            metric(torch.sigmoid(logits), y.long())
        self.log("val_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(y), sync_dist=True)
        self.log("val_acc", self.val_acc, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(y))
        self.log("val_f1", self.val_f1, on_step=False, on_epoch=True, batch_size=len(y))
        self.log("val_map", self.val_map, on_step=False, on_epoch=True, batch_size=len(y))


def module_class(task: str) -> type[ClassifierModule]:
    return MultiLabelModule if task == "multilabel" else ClassifierModule


def selection_metric(task: str | None) -> str:
    """The val metric best.pt, early stopping and metrics.json's best epoch follow."""
    return "val_map" if task == "multilabel" else "val_acc"
