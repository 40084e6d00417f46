"""Training setup shared by ``imgcls train``, ``lr-find`` and ``bench``: settings resolved from the data,
the data and model prepared once, the module's recipe, and the stage's data (images or cached features).
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import warnings
from collections.abc import Iterator
from typing import Any

import lightning.pytorch as pl
import torch

from imgcls.config import TrainConfig, update_config
from imgcls.data.datamodule import FeatureDataModule, ImageDataModule, class_weights
from imgcls.data.decoded_cache import use_decoded_cache
from imgcls.data.doctor import check_training_data
from imgcls.data.presets import EvalPreset
from imgcls.data.profile import DataProfile, profile_data
from imgcls.data.source import DataSource, resolve_data
from imgcls.errors import ConfigError
from imgcls.models.factory import SCRATCH_MODELS, CreatedModel, create_model, resolve_arch
from imgcls.models.recipe import Recipe
from imgcls.rundir import RunDir
from imgcls.runtime import cpu_loader_workers, usable_cpus
from imgcls.training.decide import decide, log_decisions, wants_auto
from imgcls.training.distributed import is_rank_zero, quiet_other_ranks
from imgcls.training.features import head_matches_model, supports_cached_features, train_val_features
from imgcls.training.strategies import default_head_epochs, default_layer_decay, default_lr
from imgcls.training.tracking import check_loggers_installed

log = logging.getLogger(__name__)


# settings ---------------------------------------------------------------------------------------
def default_workers() -> int:
    """Loader processes: leave the cores to the model on small CPU machines, more with a GPU."""
    return min(8, usable_cpus()) if torch.cuda.is_available() else cpu_loader_workers()


def default_precision() -> str:
    if torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32"


def check_precision(precision: str) -> None:
    """Mixed precision the hardware cannot run is a user error, not a traceback from deep in Lightning."""
    if precision == "16-mixed" and not torch.cuda.is_available():
        raise ConfigError("--precision 16-mixed needs a CUDA GPU; on a CPU use --precision bf16-mixed or 32")
    if precision == "bf16-mixed" and torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
        raise ConfigError("--precision bf16-mixed is not supported by this GPU; use --precision 16-mixed")
    if precision == "bf16-mixed" and not torch.cuda.is_available() and not _cpu_has_bfloat16():
        log.warning("--precision bf16-mixed on a CPU without bfloat16 instructions (AVX512-BF16 or AMX): each "
                    "operation is emulated and runs several times slower than --precision 32")


def _cpu_has_bfloat16() -> bool:
    """Without these, an efficientnet_lite0 training step took 5.7x as long in bf16-mixed as in 32 (2 AVX2 cores)."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # another torch build: assume it has them rather than warn wrongly
        return True


def scratch_img_size(source: DataSource) -> int:
    """For nets without a pretrained input size: the data's typical size, a multiple of 8 in [32, 224]."""
    return min(224, max(32, math.ceil(source.typical_size() / 8) * 8))


def resolve_config(config: TrainConfig, source: DataSource, profile: DataProfile | None = None,
                   announce: bool = True) -> TrainConfig:
    """Fill every "decide for me" (None) setting; the result is what config.yaml records. Settings the
    data decide (training/decide.py) come back with their reasons in ``decided``."""
    arch = resolve_arch(config.model)
    scratch_net = arch in SCRATCH_MODELS
    if config.strategy == "scratch" and config.weights:
        raise ConfigError("--strategy scratch trains from random initialisation; drop --weights, "
                          "or use --strategy finetune to start from those weights")
    pretrained = bool(config.weights) or (config.pretrained and not scratch_net and config.strategy != "scratch")
    strategy = config.strategy or ("feature-extraction" if pretrained else "scratch")
    if strategy in ("feature-extraction", "staged", "finetune") and not pretrained:
        raise ConfigError(f"--strategy {strategy} needs pretrained weights, but {config.model} has none here "
                          f"(--no-pretrained or a scratch net); use --strategy scratch, or give --weights PATH")
    profile = profile or profile_data(source)
    explicit = set(config.model_fields_set)
    decided = decide(config, explicit, profile, strategy,
                     searching=wants_auto(config, explicit) and source.task == "single")
    config = update_config(config, **{name: value for name, (value, _) in decided.items()})
    changes: dict[str, Any] = {
        "task": resolve_task(config, source),
        "strategy": strategy,
        "pretrained": pretrained,
        "lr": config.lr or default_lr(strategy, config.optimizer),
        "img_size": config.img_size or (scratch_img_size(source) if scratch_net else None),
        "augment": config.augment or ("standard" if strategy in ("finetune", "staged") else "light"),
        "head_epochs": (config.head_epochs or default_head_epochs(config.epochs)) if strategy == "staged" else None,
        "layer_decay": config.layer_decay or default_layer_decay(strategy),
        "precision": config.precision or default_precision(),
        "workers": default_workers() if config.workers is None else config.workers,
        "name": config.name or run_name(config.model, strategy),
        "freeze_bn": bool(config.freeze_bn),
    }
    config = update_config(config, **changes)
    config.decided.update({name: reason for name, (_, reason) in decided.items()})
    if announce:
        log_decisions(profile, config.decided)
    check_precision(config.precision)
    return config


def run_name(model: str, strategy: str) -> str:
    return re.sub(r"[^\w.-]+", "_", f"{model}-{strategy}")


def resolve_task(config: TrainConfig, source: DataSource) -> str:
    """The task the data holds (labels.csv: multilabel); --task only confirms it, and multi-label refuses the
    settings that assume one class per image."""
    if config.task is not None and config.task != source.task:
        found = "labels.csv (multi-label)" if source.task == "multilabel" else "class folders (one label each)"
        raise ConfigError(f"--task {config.task}, but {source.spec} holds {found}; drop --task, or give "
                          + ("a folder with labels.csv (path,labels)" if config.task == "multilabel"
                             else "a folder of class folders"))
    if source.task == "multilabel":
        for name, value, off in (("mixup", config.mixup, 0), ("cutmix", config.cutmix, 0),
                                 ("label_smoothing", config.label_smoothing, 0), ("balance", config.balance, "none"),
                                 ("ema", config.ema, False)):
            if value != off:
                raise ConfigError(f"--{name.replace('_', '-')} assumes one class per image; multi-label training "
                                  f"(labels.csv) does not support it: drop the flag")
    return source.task


def make_recipe(config: TrainConfig, source: DataSource, **stage: Any) -> Recipe:
    """The module's recipe: ``config``'s optimisation settings, then the stage's (lr, epochs, frozen, inputs...)."""
    weights = None
    if config.balance == "loss":
        weights = class_weights(source.labels("train"), len(source.classes)).tolist()
    settings = {"optimizer": config.optimizer, "lr": config.lr, "weight_decay": config.weight_decay,
                "momentum": config.momentum, "scheduler": config.scheduler, "warmup_epochs": config.warmup_epochs,
                "epochs": config.epochs, "label_smoothing": config.label_smoothing, "mixup": config.mixup,
                "cutmix": config.cutmix, "class_weights": weights, "freeze_bn": bool(config.freeze_bn),
                "task": source.task}
    return Recipe(**{**settings, **stage})


def describe_data(source: DataSource) -> None:
    for item in source.skipped:
        log.warning("skipped %s (%s): %s", item.path, item.kind, item.detail)
    sizes = " / ".join(f"{len(source.labels(s))} {s}" for s in source.splits)
    log.info("data: %s: %d classes (%s), %s images", source.spec, len(source.classes),
             ", ".join(source.classes[:10]) + (" ..." if len(source.classes) > 10 else ""), sizes)


# Notices a user can do nothing about (loader advice we already follow, log intervals, internals).
LIGHTNING_NOTICES = (".*does not have many workers.*", ".*LeafSpec.*", ".*treespec, LeafSpec.*",
                     ".*Checkpoint directory .* exists and is not empty.*", ".*sync_dist=True.*",
                     ".*smaller than the logging interval.*", ".*exists and is not empty.*",
                     ".*restarting from a mid-epoch checkpoint.*", ".*resuming from a checkpoint that ended.*",
                     ".*pin_memory.* no accelerator is found.*", ".*module\\(s\\) in eval mode.*",
                     ".*PlateauLRScheduler is deprecated.*")


def quiet_lightning_logs() -> None:
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
    logging.getLogger("lightning.fabric.utilities.seed").setLevel(logging.WARNING)


@contextlib.contextmanager
def lightning_notices_hidden(*extra: str) -> Iterator[None]:
    """Within the block (a Trainer's construction and fit), the notices above and ``extra`` are not shown;
    the caller's warning filters are back afterwards."""
    with warnings.catch_warnings():
        for pattern in (*LIGHTNING_NOTICES, *extra):
            warnings.filterwarnings("ignore", message=pattern)
        yield


# data and model ---------------------------------------------------------------------------------
def prepare(config: TrainConfig, verb: str = "train", resuming: RunDir | None = None,
            ) -> tuple[TrainConfig, DataSource, CreatedModel]:
    """The data and the model ``config`` names, resolved once for ``imgcls train``, ``lr-find`` and ``bench``;
    the config comes back completed (defaults that depend on the data, the model's image size).

    ``resuming``: the run being continued. Its recorded split is reused, its classes must still be the
    data's, and the network starts from random weights (the caller loads last.pt's into it)."""
    if not config.data:
        raise ConfigError(f"no DATA given; pass a folder (or cifar10) as `imgcls {verb} DATA`, or `data:` in --config")
    quiet_lightning_logs()
    quiet_other_ranks()
    pl.seed_everything(config.seed, workers=True, verbose=False)

    resolve_arch(config.model)  # a mistyped --model fails now, not after checking every image
    check_loggers_installed(config.logger)
    source = resolve_data(config.data, val_split=config.val_split, seed=config.seed,
                          recorded_split=resuming.read_split() if resuming else None)
    describe_data(source)
    if resuming is not None:
        if source.classes != resuming.read_classes():
            raise ConfigError(f"the classes in {config.data} ({', '.join(source.classes)}) are no longer those of "
                              f"the run ({', '.join(resuming.read_classes())}); restore the data or start a new run")
    elif is_rank_zero() and source.task == "single":  # labels.csv rows were checked as they were read
        check_training_data(source)  # warns about leaks, label conflicts, duplicates, imbalance
    config = resolve_config(config, source)
    created = create_model(config.model, len(source.classes), pretrained=config.pretrained and resuming is None,
                           weights=None if resuming else config.weights, img_size=config.img_size,
                           cifar_stem=config.cifar_stem)
    return update_config(config, img_size=created.preprocess.img_size), source, created


def make_datamodule(config: TrainConfig, source: DataSource, created: CreatedModel,
                    on_features: bool) -> tuple[pl.LightningDataModule, torch.Tensor | None]:
    """The stage's data: embeddings from the feature cache (and the val ones, returned too), or images."""
    if on_features:
        train_set, val_set = train_val_features(created.model, source, created.preprocess, created.spec.to_dict(),
                                                mirror=mirror_features(config), batch_size=2 * config.batch_size,
                                                workers=config.workers)
        return FeatureDataModule((train_set.features, train_set.labels), (val_set.features, val_set.labels),
                                 num_classes=len(source.classes), batch_size=config.batch_size,
                                 balance=config.balance, seed=config.seed), val_set.features
    return ImageDataModule(source, created.preprocess, batch_size=config.batch_size, workers=config.workers,
                           augment=config.augment, hflip=config.hflip, balance=config.balance, seed=config.seed,
                           decoded_cache=source.task == "single" and use_decoded_cache(config, source,
                                                                                       created.preprocess)), None


def mirror_features(config: TrainConfig) -> bool:
    """Cache a mirrored copy of each training image too? Only with --augment standard (and --hflip): on
    ants/bees it steadied the last epochs (+0.5% val acc, mean of 10 seeds) but not the best epoch, for a
    second forward pass over the train split (the mirrored copy is flipped from the same decoded pixels)."""
    return config.hflip and config.augment == "standard"


def use_feature_cache(config: TrainConfig, created: CreatedModel, source: DataSource) -> bool:
    """Whether the frozen backbone can run once instead of every epoch; says why not when it cannot."""
    if not config.cache_features:
        return False
    if config.cutmix > 0:
        log.info("--cutmix mixes pixels, so the frozen backbone runs every epoch (no feature cache)")
        return False
    if not supports_cached_features(created.model):
        log.info("%s has no forward_head/get_classifier; the frozen backbone runs every epoch", config.model)
        return False
    probe = source.dataset("val", EvalPreset(created.preprocess), draft_size=created.preprocess.resize_size)
    if not head_matches_model(created.model, probe):
        log.info("%s: classifier(features) differs from the model's output; the backbone runs every epoch",
                 config.model)
        return False
    return True
