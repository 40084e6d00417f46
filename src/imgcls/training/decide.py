"""Settings decided from the data, each with its reason (config.yaml's ``decided:``, printed at the start).

Only settings the user did not name are decided: an explicit flag fixes what it names and nothing else.
"""

from __future__ import annotations

import logging
from typing import Any

from imgcls.config import TrainConfig
from imgcls.data.profile import DataProfile
from imgcls.models.hf import is_hf_name

log = logging.getLogger(__name__)

# Fewer training images than this: batch statistics of a few dozen pictures are noisier than the
# pretrained ones, so fine-tuning keeps BatchNorm's running statistics.
SMALL_DATA = 5000
# Fine-tuning on a few thousand photos trains only the network's last this many layer groups (blocks; the
# head is one): pretrained early layers hold generic features of photos that so few pictures cannot improve.
# Full-size ants/bees photos, efficientnet_lite0 (18 groups), staged 5+5 epochs: the last 6 (its 7x7 stages)
# score as every layer does (stage 2 epochs 0.935-0.954 against 0.928-0.954 val accuracy) at 10 s per epoch
# against 22-35 s on 2 CPU cores. Tiny and glyph-like images are far from ImageNet's photos: their early layers
# do need to adapt (32-px photos: 0.837 held-out accuracy with the last 6 against 0.878 with every layer).
SMALL_DATA_BLOCKS = 6
# Largest class this many times the smallest: the loss weighs classes by inverse frequency.
IMBALANCED = 3.0
# Photos (neither tiny nor glyph-like) up to this many: the search's heads train on the features of a
# larger backbone. A linear head on efficientnet_lite2's features separates the full-size ants/bees
# photos better than on lite0's (0.961-0.967 against 0.941 val accuracy) for about twice the forward
# pass, paid once per image; beyond this many images that once costs minutes on a CPU.
PHOTO_BACKBONE = "efficientnet_lite2"
PHOTO_BACKBONE_IMAGES = 3000


def wants_auto(config: TrainConfig, explicit: set[str]) -> bool:
    """--auto given, or neither --strategy nor --model (nor --weights): search; --no-auto never."""
    if config.auto is not None:
        return config.auto
    # one search per process of a distributed run would repeat the same work on every rank
    # heads are scored with a single-label loss: multi-label data trains the recipe it names
    return (not explicit & {"strategy", "model", "weights"} and config.processes == 1
            and config.task != "multilabel")


def decide(config: TrainConfig, explicit: set[str], profile: DataProfile, strategy: str,
           searching: bool = False) -> dict[str, tuple[Any, str]]:
    """setting -> (value, reason) for the settings left open that the data (or ``strategy``) decide;
    ``searching``: --auto will search recipes, starting with heads on the features of the model decided here."""
    decided: dict[str, tuple[Any, str]] = {}

    def open_(name: str) -> bool:
        return name not in explicit and getattr(config, name) in (None, TrainConfig.model_fields[name].default)

    if (searching and open_("model") and strategy == "feature-extraction" and not profile.tiny
            and not profile.is_glyphs and profile.images <= PHOTO_BACKBONE_IMAGES):
        decided["model"] = (PHOTO_BACKBONE, f"photos ({profile.images} train images): the heads train on the "
                                            f"features of a larger backbone, extracted once per image")

    if open_("hflip") and profile.is_glyphs:
        decided["hflip"] = (False, "the images look like glyphs or documents (gray strokes on a plain background): "
                                   "a mirrored symbol is a different picture")
    if config.augment is None and (profile.tiny or profile.is_glyphs):
        why = (f"tiny images (typical shorter side {profile.typical_side} px)" if profile.tiny
               else "glyph-like images")
        decided["augment"] = ("translate", f"{why}: the whole picture shifted a little, not random crops that cut "
                                           f"away most of it")
    if open_("balance") and profile.imbalance >= IMBALANCED:
        decided["balance"] = ("loss", f"classes are unbalanced ({profile.min_per_class} to {max(profile.per_class)} "
                                      f"images): the loss weighs each class by its rarity")
    if config.freeze_bn is None and strategy in ("finetune", "staged"):
        small = profile.images < SMALL_DATA
        decided["freeze_bn"] = (small, f"{profile.images} training images: " + (
            "BatchNorm keeps its pretrained statistics while fine-tuning (batch statistics of so few are noisier)"
            if small else "enough for BatchNorm to learn this data's statistics"))
    # (transformers' models name no layer groups: every layer trains)
    if (open_("trainable_blocks") and strategy in ("finetune", "staged") and profile.images < SMALL_DATA
            and not profile.tiny and not profile.is_glyphs and not is_hf_name(config.model)):
        decided["trainable_blocks"] = (SMALL_DATA_BLOCKS, (
            f"photos, {profile.images} training images: fine-tuning trains the network's last {SMALL_DATA_BLOCKS} "
            f"blocks (the head included); the early layers keep their pretrained weights, and their backward "
            f"pass, most of a step's time, is not run"))
    if open_("warmup_epochs") and strategy == "finetune" and config.epochs >= 3:
        decided["warmup_epochs"] = (1, "fine-tuning starts from a random head: one warm-up epoch keeps its first "
                                       "large gradients from disturbing the pretrained layers")
    return decided


def log_decisions(profile: DataProfile, decided: dict[str, str]) -> None:
    log.info("data profile: %s", profile.describe())
    for name, reason in decided.items():
        log.info("decided %s: %s", name, reason)
