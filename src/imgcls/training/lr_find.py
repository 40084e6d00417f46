"""Learning-rate finder: Lightning's ``Tuner.lr_find`` on the module and data ``imgcls train`` builds.

The learning rate grows exponentially over a few dozen batches while the loss is recorded; the
suggestion is the rate where the loss falls fastest. ``imgcls lr-find`` prints it and writes
``lr_find.png``; ``imgcls train --lr auto`` runs it first and records the chosen rate in config.yaml.
The network's weights are restored afterwards (Lightning saves and reloads them).
"""

from __future__ import annotations

import io
import logging
import math
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import lightning.pytorch as pl

from imgcls.config import TrainConfig, update_config
from imgcls.data.source import DataSource
from imgcls.errors import ConfigError
from imgcls.models.factory import CreatedModel
from imgcls.models.metadata import checkpoint_meta
from imgcls.models.module import ClassifierModule
from imgcls.models.multilabel import MultiLabelModule
from imgcls.rundir import RunDir, atomic_write_bytes, writable_folder, write_json
from imgcls.training.setup import lightning_notices_hidden, make_datamodule, make_recipe, prepare, use_feature_cache
from imgcls.training.strategies import apply_stage, default_lr, plan_stages, unfreeze

log = logging.getLogger(__name__)

MIN_LR, MAX_LR = 1e-6, 1.0
DEFAULT_STEPS = 50


@dataclass
class LrFinding:
    suggestion: float
    lrs: list[float] = field(repr=False)
    losses: list[float] = field(repr=False)
    strategy: str = ""
    plot: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"suggestion": self.suggestion, "strategy": self.strategy, "plot": self.plot,
                "lrs": self.lrs, "losses": self.losses}


class _FinderModule(ClassifierModule):
    """The training module, stepping the finder's torch scheduler the torch way (ours are timm's).

    The range test gets the DataModule's training loader alone (a whole DataModule would make the finder
    validate too), so the DataModule's per-batch step (normalising the decoded cache's uint8 pixels) runs
    here, where Lightning calls it when no DataModule is attached.
    """

    batches_from: pl.LightningDataModule | None = None

    def lr_scheduler_step(self, scheduler: Any, metric: Any) -> None:
        scheduler.step()

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if self.batches_from is None:
            return batch
        return self.batches_from.on_after_batch_transfer(batch, dataloader_idx)


class _MultiLabelFinderModule(MultiLabelModule):
    lr_scheduler_step = _FinderModule.lr_scheduler_step


def _search_strategy(strategy: str) -> str:
    # staged starts by training the head alone: its first (and main) learning rate is the head's.
    return "feature-extraction" if strategy == "staged" else strategy


def _finder_parts(config: TrainConfig, source: DataSource, created: CreatedModel) -> tuple[ClassifierModule, Any]:
    """The module and training loader as ``fit`` builds them (same recipe, preprocessing and augmentation;
    a frozen backbone's cached embeddings, so the range test does not run the backbone at every step)."""
    strategy = _search_strategy(config.strategy or "scratch")
    lr = default_lr(strategy, config.optimizer)
    # the parameters fit's first stage trains, no others (a frozen backbone, or fine-tuning's last blocks)
    frozen = apply_stage(created.model, plan_stages(strategy, 2, lr, 1.0, 0,
                                                    trainable_blocks=config.blocks_to_train)[0])["frozen"]
    on_features = frozen and use_feature_cache(config, created, source)
    placeholder = update_config(config, lr=lr, scheduler="none")
    meta = checkpoint_meta(created.spec, source.classes, created.preprocess, strategy=config.strategy)
    recipe = make_recipe(placeholder, source, frozen=frozen, inputs="features" if on_features else "images")
    finder_class = _MultiLabelFinderModule if source.task == "multilabel" else _FinderModule
    module = finder_class(created.model, meta, recipe)
    datamodule, _ = make_datamodule(config, source, created, on_features)
    datamodule.setup("fit")
    module.batches_from = datamodule
    return module, datamodule.train_dataloader()


@contextmanager
def _range_test_bar_only_on_a_terminal() -> Iterator[None]:
    """Lightning's range test draws a tqdm bar of its own, always; in a log file (stderr no terminal) each
    update would be a carriage return. Its module's ``tqdm`` is swapped for a disabled one meanwhile, and
    find_lr writes a plain line instead."""
    from lightning.pytorch.tuner import lr_finder

    if sys.stderr.isatty() or not hasattr(lr_finder, "tqdm"):
        yield
        return
    bar = lr_finder.tqdm
    lr_finder.tqdm = partial(bar, disable=True)
    try:
        yield
    finally:
        lr_finder.tqdm = bar


def find_lr(config: TrainConfig, source: DataSource, created: CreatedModel, out: Path | None = None,
            steps: int = DEFAULT_STEPS) -> LrFinding:
    """Run the range test; writes lr_find.png and lr_find.json into ``out`` when given."""
    from lightning.pytorch.tuner import Tuner

    module, loader = _finder_parts(config, source, created)
    strategy = _search_strategy(config.strategy or "scratch")
    log.info("lr-find: %d steps from %g to %g (%s, batch %d)", steps, MIN_LR, MAX_LR, strategy, config.batch_size)
    by_design = (".*max_epochs.* was not set.*", ".*no `val_dataloader`.*")  # a range test has neither
    with (tempfile.TemporaryDirectory(prefix="imgcls-lr-find-") as scratch, lightning_notices_hidden(*by_design),
          _range_test_bar_only_on_a_terminal()):
        logging.getLogger("lightning.pytorch.trainer.connectors.checkpoint_connector").setLevel(logging.WARNING)
        trainer = pl.Trainer(accelerator="auto", devices=1, precision=config.precision, logger=False,
                             enable_checkpointing=False, enable_model_summary=False, default_root_dir=scratch,
                             accumulate_grad_batches=config.accumulate, gradient_clip_val=config.grad_clip)
        finder = Tuner(trainer).lr_find(module, train_dataloaders=loader, min_lr=MIN_LR, max_lr=MAX_LR,
                                        num_training=steps, update_attr=False)
    unfreeze(created.model)  # fit freezes what its strategy (or stage) says
    lrs = [float(x) for x in finder.results.get("lr", [])] if finder is not None else []
    losses = [float(x) for x in finder.results.get("loss", [])] if finder is not None else []
    log.info("lr-find: %d of %d steps ran", len(lrs), steps)
    suggestion = steepest_descent(lrs, losses)
    if suggestion is None:
        raise ConfigError(f"lr-find could not suggest a learning rate from {len(lrs)} steps (too few batches or a "
                          f"diverging loss); give --lr, or use more --steps or a smaller --batch-size")
    finding = LrFinding(suggestion, lrs, losses, strategy)
    if out is not None:
        finding.plot = str(_write(finding, Path(out)))
    return finding


def steepest_descent(lrs: list[float], losses: list[float], skip_begin: int = 5) -> float | None:
    """The rate where the (smoothed) loss falls fastest per decade, before its minimum.

    Lightning's own ``suggestion()`` takes the slope against the rate itself, which favours the tiniest
    rates (on ants/bees it suggested 1.8e-6 for a linear probe whose loss kept falling up to 1e-1).
    """
    points = [(math.log10(lr), loss) for lr, loss in zip(lrs, losses) if lr > 0 and math.isfinite(loss)]
    if len(points) < skip_begin + 3:
        return None
    # The minimum after the skipped start: the first smoothed losses are a handful of batches, often
    # lower than anything later (ants/bees: 0.32 at 1e-6), and would end the search before it began.
    lowest = min(range(skip_begin, len(points)), key=lambda i: points[i][1])
    window = points[skip_begin:max(lowest + 1, skip_begin + 3)]
    slopes = [(b[1] - a[1]) / (b[0] - a[0]) for a, b in zip(window, window[1:]) if b[0] > a[0]]
    if not slopes:
        return None
    best = min(range(len(slopes)), key=slopes.__getitem__)
    return float(10 ** ((window[best][0] + window[best + 1][0]) / 2))


def _write(finding: LrFinding, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6.4, 4.2))
    axis.plot(finding.lrs, finding.losses)
    axis.set_xscale("log")
    axis.axvline(finding.suggestion, color="red", linestyle=":", linewidth=1.2,
                 label=f"suggested lr {finding.suggestion:.3g}")
    axis.set_xlabel("learning rate")
    axis.set_ylabel("training loss (smoothed)")
    axis.set_title(f"learning-rate range test ({finding.strategy})")
    axis.legend()
    path = out / RunDir.LR_FIND_PLOT
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    atomic_write_bytes(path, buffer.getvalue())
    write_json(out / RunDir.LR_FIND_RESULT, finding.to_dict())
    return path


def resolve_auto_lr(config: TrainConfig, source: DataSource, created: CreatedModel, out: Path | None) -> TrainConfig:
    """``--lr auto``: the finder's suggestion as the run's lr (recorded in config.yaml); otherwise unchanged."""
    if config.lr != "auto":
        return config
    finding = find_lr(config, source, created, out)
    log.info("--lr auto: lr-find suggests %.3g; training with it%s", finding.suggestion,
             f" (plot: {finding.plot})" if finding.plot else "")
    return update_config(config, lr=finding.suggestion)


def lr_find(config: TrainConfig, out: str | Path, steps: int = DEFAULT_STEPS) -> LrFinding:
    """``imgcls lr-find``: data and model resolved exactly as ``imgcls train`` does, then the range test."""
    writable_folder(Path(out), "lr_find.png")  # before the range test, not after it
    config, source, created = prepare(config, verb="lr-find")
    return find_lr(config, source, created, Path(out), steps)
