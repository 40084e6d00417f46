"""Training settings: one validated model, filled from defaults <- YAML file <- command-line flags.

Keys are the flag names (``batch-size`` or ``batch_size`` both work in YAML). ``None`` for a field
means "decide from the data and model": :func:`imgcls.training.setup.resolve_config` fills those in,
and the run's ``config.yaml`` records every value actually used, so it reruns the same training.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from imgcls.errors import ConfigError, close_matches

Strategy = Literal["scratch", "feature-extraction", "finetune", "staged"]
STRATEGY_ALIASES = {"linear-probe": "feature-extraction", "fine-tune": "finetune", "fine-tuning": "finetune"}
LoggerName = Literal["tensorboard", "csv", "wandb", "mlflow"]
LOGGERS: tuple[str, ...] = get_args(LoggerName)
DEFAULT_LOGGERS = ["tensorboard", "csv"]


def logger_names(value: Any) -> list[str]:
    """``"tensorboard,mlflow"``, ``["csv", "wandb"]`` or ``"none"`` -> validated names, in order, once each.
    Whether a logger's package is installed is checked when training starts, not here: a run recorded with
    ``logger: [mlflow]`` stays readable on a machine without mlflow."""
    if value is None:
        return list(DEFAULT_LOGGERS)
    items: Iterable[Any] = [value] if isinstance(value, str) else value
    names: list[str] = []
    for item in items:
        for name in str(item).split(","):
            name = name.strip().lower()
            if not name or name == "none" or name in names:
                continue
            if name not in LOGGERS:
                raise ValueError(f"unknown logger {name!r}; choose from {', '.join(LOGGERS)} (or none)")
            names.append(name)
    return names


class TrainConfig(BaseModel):
    """Every setting of ``imgcls train``: each field is a flag (``batch_size`` -> ``--batch-size``) whose help is
    its ``description``; the options of the CLI are generated from these fields (:mod:`imgcls.cli_options`)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
    # setting -> why imgcls chose its value from the data; written to config.yaml as `decided:`, not a flag
    _decided: dict[str, str] = PrivateAttr(default_factory=dict)

    data: str | None = Field(None, description="Folder with train/ and val/, a folder of class folders, a folder "
                                               "with labels.csv (multi-label), or cifar10[:PATH]")
    task: Literal["single", "multilabel"] | None = Field(
        None, description="single: one class per image (class folders); multilabel: any number of labels per "
                          "image (labels.csv) (detected from the data)")
    model: str = Field("efficientnet_lite0", description="timm name, hf:DIR or hf:ORG/NAME (transformers), "
                       "small_cnn/cifar_cnn/resnet_cifar; `imgcls models` lists them (efficientnet_lite0, "
                       "ImageNet weights offline; --auto on photos: efficientnet_lite2's features)")
    strategy: Strategy | None = Field(None, description="Training strategy; linear-probe = feature-extraction "
                                      "(feature-extraction when pretrained, else scratch)")
    weights: str | None = Field(None, description="Local pretrained weights file (.pt/.pth state dict)")
    pretrained: bool = Field(True, description="Start from pretrained weights (yes when available)")
    epochs: int = Field(10, ge=1, le=100_000, description="Epochs")
    batch_size: int = Field(32, ge=1, description="Images per batch")
    lr: float | Literal["auto"] | None = Field(None, description="Learning rate, or auto: lr-find picks it (by "
                                                "strategy and optimizer)")
    weight_decay: float = Field(0.01, ge=0, description="Weight decay")
    img_size: int | None = Field(None, ge=8, le=4096, description="Input size in pixels (the model's own; scratch "
                                 "nets: the data's)")
    optimizer: Literal["adamw", "sgd", "adam"] = Field("adamw", description="Optimizer")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum")
    scheduler: Literal["cosine", "wsd", "step", "plateau", "none", "onecycle"] = Field(
        "cosine", description="Learning-rate schedule (wsd: steady, then the last fifth decays; plateau: lowers the "
        "rate when val accuracy stalls, but --resume restarts its patience)")
    warmup_epochs: int = Field(0, ge=0, description="Linear warm-up epochs")
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="Label smoothing")
    mixup: float = Field(0.0, ge=0, description="Mixup alpha, 0 = off")
    cutmix: float = Field(0.0, ge=0, description="CutMix alpha, 0 = off")
    balance: Literal["none", "sampler", "loss"] = Field("none", description="Class imbalance")
    patience: int | None = Field(None, ge=1, description="Stop after this many epochs without a better val accuracy "
                                 "(off)")
    seed: int = Field(42, description="Random seed")
    precision: Literal["32", "16-mixed", "bf16-mixed"] | None = Field(None, description="Numeric precision "
                                                                      "(bf16/16 on GPU, 32 on CPU)")
    devices: int = Field(1, ge=1, description="Processes/GPUs on this machine")
    num_nodes: int = Field(1, ge=1, description="Machines")
    workers: int | None = Field(None, ge=0, description="Data loader processes (by machine)")
    val_split: float = Field(0.2, gt=0, lt=1, description="Validation share when imgcls splits DATA")
    augment: Literal["standard", "light", "none", "translate"] | None = Field(
        None, description="Augmentation (standard for fine-tuning, else light)")
    hflip: bool = Field(True, description="Random horizontal flips")
    head_epochs: int | None = Field(None, ge=1, description="staged: epochs of stage 1, the head on cached features "
                                    "(half of --epochs)")
    layer_decay: float | None = Field(None, gt=0, le=1, description="Fine-tuning: lr factor per layer towards the "
                                      "input, 1 = off (0.85)")
    freeze_bn: bool | None = Field(None, description="Fine-tuning: BatchNorm keeps its pretrained statistics (on "
                                   "for small data)")
    trainable_blocks: int | Literal["all"] | None = Field(
        None, description="Fine-tuning: only the network's last N blocks train (timm's layer groups, the head "
                          "included), the earlier ones keep their pretrained weights; all = every layer (a few "
                          "photos: 6)")
    cache_features: bool = Field(True, description="Feature extraction: run the frozen backbone once and train the "
                                 "head on cached features")
    cifar_stem: bool = Field(False, description="ResNets: 3x3 first conv, no max-pool, for tiny images")
    cache: Literal["auto", "on", "off"] = Field("auto", description="Decoded-image cache (auto: on for large image "
                                                "files)")
    auto: bool | None = Field(None, description="Search recipes on data held out from train and keep the best (on "
                              "when neither --strategy nor --model is given)")
    time_budget: float | str = Field(300.0, description="--auto: time for the search, e.g. 90s, 5m, 1h (5m)")
    out: str = Field("runs", description="Folder for run directories")
    name: str | None = Field(None, description="Run name (MODEL-STRATEGY; -2, -3... when taken)")
    logger: list[LoggerName] = Field(default_factory=lambda: list(DEFAULT_LOGGERS),
                                     description="Experiment loggers, repeated or comma-separated; none turns "
                                                 "them off")
    experiment: str | None = Field(None, description="MLflow experiment / wandb project (imgcls)")
    tracking_uri: str | None = Field(None, description="MLflow tracking URI ($MLFLOW_TRACKING_URI, else a file "
                                     "store in RUN/logs/mlruns)")
    ema: bool = Field(False, description="Also keep an exponential moving average of the weights; checkpoints hold "
                      "whichever validates better")
    ema_decay: float = Field(0.999, gt=0, lt=1, description="EMA decay, reached after a warm-up")
    accumulate: int = Field(1, ge=1, description="Batches whose gradients add up before each optimizer step")
    grad_clip: float | None = Field(None, gt=0, description="Clip the gradient norm to this value (off)")
    calibrate: bool = Field(True, description="After training, fit a temperature on val so scores are calibrated, "
                            "in best.pt and every export")

    @field_validator("strategy", mode="before")
    @classmethod
    def _strategy_alias(cls, value: Any) -> Any:
        return STRATEGY_ALIASES.get(value, value) if isinstance(value, str) else value

    @field_validator("time_budget", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        seconds = parse_duration(value) if isinstance(value, str) else value
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds <= 0:
            raise ValueError("must be a duration such as 90s, 5m or 1h")
        return float(seconds)

    @field_validator("trainable_blocks", mode="before")
    @classmethod
    def _some_blocks(cls, value: Any) -> Any:
        if isinstance(value, str) and value != "all":
            try:
                value = int(value)
            except ValueError:
                raise ValueError("must be a number of blocks (1 or more) or all") from None
        if isinstance(value, int) and not isinstance(value, bool) and value < 1:
            raise ValueError("must be at least 1 (the head), or all")
        return value

    @property
    def blocks_to_train(self) -> int | None:
        """Fine-tuning trains the network's last this many layer groups; None: every layer."""
        return self.trainable_blocks if isinstance(self.trainable_blocks, int) else None

    @property
    def processes(self) -> int:
        """How many processes train (one per device on each machine); 1: no distributed run."""
        return self.devices * self.num_nodes

    @property
    def decided(self) -> dict[str, str]:
        return self._decided

    @field_validator("cache", mode="before")
    @classmethod
    def _cache_as_text(cls, value: Any) -> Any:
        # YAML 1.1 reads `cache: on` / `cache: off` as booleans.
        return {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value

    @field_validator("lr", mode="wrap")
    @classmethod
    def _lr_number_or_auto(cls, value: Any, handler: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() == "auto":
            return "auto"
        if isinstance(value, bool):
            raise ValueError("must be a number such as 0.001, or auto")
        try:
            lr = float(value) if value is not None else None
        except (TypeError, ValueError):
            raise ValueError("must be a number such as 0.001, or auto") from None
        if lr is not None and not 0 < lr <= 10:
            raise ValueError("must be greater than 0 and at most 10, or auto")
        return lr

    @field_validator("logger", mode="before")
    @classmethod
    def _logger_names(cls, value: Any) -> Any:
        return logger_names(value)

    @field_validator("precision", mode="before")
    @classmethod
    def _precision_as_text(cls, value: Any) -> Any:
        # YAML reads `precision: 32` as an int; the Trainer's names are strings.
        return str(value) if isinstance(value, int) else value


DECIDED = "decided"
_UNITS = {"s": 1, "m": 60, "h": 3600}


def parse_duration(text: str) -> float:
    """'90s', '5m', '1.5h' or '300' (seconds) -> seconds."""
    text = text.strip().lower()
    unit = _UNITS.get(text[-1:], None)
    try:
        return float(text[:-1] if unit else text) * (unit or 1)
    except ValueError:
        raise ValueError("must be a duration such as 90s, 5m or 1h") from None


def config_record(config: TrainConfig) -> dict[str, Any]:
    """What config.yaml holds: every setting, and the reasons of those decided from the data."""
    return {**config.model_dump(), **({DECIDED: dict(config.decided)} if config.decided else {})}


def flag_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def _describe(error: dict[str, Any]) -> str:
    field = ".".join(str(part) for part in error["loc"]) or "config"
    if error["type"] == "extra_forbidden":
        return (f"unknown setting '{field}'{close_matches(field, TrainConfig.model_fields)}; "
                f"the settings are the flags of `imgcls train --help`")
    got = error.get("input")
    message = error["msg"].replace("Input should be", "must be").removeprefix("Value error, ")
    return f"{flag_name(field)}: {message} (got {got!r})"


def validation_message(error: ValidationError) -> str:
    return "; ".join(_describe(e) for e in error.errors())


def read_yaml_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML config with the safe loader; keys normalised to snake_case."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}; give the path of a YAML file with train settings")
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        raise ConfigError(f"config file {path} is not valid YAML{line}: "
                          f"{getattr(exc, 'problem', None) or exc}; fix its syntax") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text; save it as UTF-8 YAML") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {path} must be a mapping of settings (key: value), not a {type(loaded).__name__}")
    # a run's config.yaml reruns its training: the reasons it records are not settings
    return {str(key).replace("-", "_"): value for key, value in loaded.items() if key != DECIDED}


def load_train_config(config_file: str | Path | None = None, **overrides: Any) -> TrainConfig:
    """Defaults <- YAML file <- overrides (flags); overrides that are None are not given."""
    values = read_yaml_config(config_file) if config_file else {}
    # Python callers pass pathlib.Path where the CLI passes text; both mean the same path
    values.update({key.replace("-", "_"): str(value) if isinstance(value, Path) else value
                   for key, value in overrides.items() if value is not None})
    try:
        return TrainConfig(**values)
    except ValidationError as exc:
        source = f" in {config_file}" if config_file else ""
        raise ConfigError(validation_message(exc) + source) from None


def config_of_run(values: dict[str, Any], where: str | Path) -> TrainConfig:
    """The settings a run recorded (its config.yaml), validated like any other."""
    values = dict(values)
    decided = values.pop(DECIDED, None) or {}
    try:
        config = TrainConfig(**values)
        config._decided.update(decided)
        return config
    except ValidationError as exc:
        raise ConfigError(f"{validation_message(exc)} in {where}; the run directory is damaged: restore the file "
                          f"or start a new run") from None


def update_config(config: TrainConfig, **changes: Any) -> TrainConfig:
    """A copy of ``config`` with ``changes`` applied and validated."""
    try:
        updated = TrainConfig(**{**config.model_dump(), **changes})
    except ValidationError as exc:
        raise ConfigError(validation_message(exc)) from None
    updated._decided.update(config.decided)
    return updated


def config_to_yaml(config: TrainConfig) -> str:
    return yaml.safe_dump(config_record(config), sort_keys=False, allow_unicode=True)
