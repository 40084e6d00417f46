"""Zero flags: settings decided from the data (with reasons), and the --auto recipe search with its leaderboard."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml

from imgcls.config import config_of_run, load_train_config, read_yaml_config
from imgcls.data.profile import profile_data
from imgcls.data.source import resolve_data
from imgcls.training.decide import wants_auto
from imgcls.training.fit import train
from imgcls.training.setup import resolve_config
from tests.helpers import ANTS_BEES, make_class_tree
from tests.training.digits import make_digits


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_digits(tmp_path_factory.mktemp("digits"), train=8, val=3, digits=range(4))


def test_profile_tells_glyphs_from_photos(digits: Path) -> None:
    glyphs = profile_data(resolve_data(digits))
    assert glyphs.tiny and glyphs.is_glyphs and glyphs.typical_side == 28
    photos = profile_data(resolve_data(ANTS_BEES))
    assert not photos.is_grayscale and not photos.is_glyphs and not photos.tiny


def test_decided_settings_carry_reasons_and_explicit_flags_win(digits: Path) -> None:
    source = resolve_data(digits)
    decided = resolve_config(load_train_config(data=str(digits)), source)
    assert decided.hflip is False and decided.augment == "translate"
    assert "mirrored" in decided.decided["hflip"] and "tiny" in decided.decided["augment"]
    given = resolve_config(load_train_config(data=str(digits), hflip=True, augment="none"), source)
    assert given.hflip is True and given.augment == "none"
    assert "hflip" not in given.decided and "augment" not in given.decided


def test_unbalanced_classes_get_a_balanced_loss(tmp_path: Path) -> None:
    make_class_tree(tmp_path / "train", ["common"], 24)
    make_class_tree(tmp_path / "train", ["rare"], 4, seed=1)
    make_class_tree(tmp_path / "val", ["common", "rare"], 3, seed=2)
    config = resolve_config(load_train_config(data=str(tmp_path)), resolve_data(tmp_path))
    assert config.balance == "loss" and "4 to 24" in config.decided["balance"]
    assert resolve_config(load_train_config(data=str(tmp_path), balance="none"), resolve_data(tmp_path)).balance == "none"


def test_auto_is_on_only_without_strategy_model_or_weights() -> None:
    def on(**options: object) -> bool:
        config = load_train_config(data="x", **options)
        return wants_auto(config, set(config.model_fields_set))

    assert on() and on(epochs=3) and on(auto=True, model="small_cnn")
    assert not on(strategy="finetune") and not on(model="resnet18") and not on(auto=False)


def test_the_search_on_photos_starts_from_a_larger_backbone_and_only_the_search(digits: Path) -> None:
    from imgcls.training.decide import PHOTO_BACKBONE

    photos = resolve_data(ANTS_BEES)
    searched = resolve_config(load_train_config(data=str(ANTS_BEES)), photos)
    assert searched.model == PHOTO_BACKBONE and "photos" in searched.decided["model"]
    for named in ({"strategy": "feature-extraction"}, {"auto": False}, {"model": "resnet18", "auto": True}):
        kept = resolve_config(load_train_config(data=str(ANTS_BEES), **named), photos)
        assert kept.model == named.get("model", "efficientnet_lite0") and "model" not in kept.decided
    glyphs = resolve_config(load_train_config(data=str(digits)), resolve_data(digits))
    assert glyphs.model == "efficientnet_lite0" and "model" not in glyphs.decided


def test_fine_tuning_few_photos_keeps_the_early_layers_but_tiny_or_glyph_images_train_every_layer(
        digits: Path) -> None:
    photos = resolve_config(load_train_config(data=str(ANTS_BEES), strategy="finetune"), resolve_data(ANTS_BEES))
    assert photos.trainable_blocks == 6 and "photos" in photos.decided["trainable_blocks"]
    staged = resolve_config(load_train_config(data=str(ANTS_BEES), strategy="staged"), resolve_data(ANTS_BEES))
    assert staged.blocks_to_train == 6
    named = resolve_config(load_train_config(data=str(ANTS_BEES), strategy="finetune", trainable_blocks="all"),
                           resolve_data(ANTS_BEES))
    assert named.blocks_to_train is None and "trainable_blocks" not in named.decided
    glyphs = resolve_config(load_train_config(data=str(digits), strategy="finetune"), resolve_data(digits))
    assert glyphs.blocks_to_train is None and "trainable_blocks" not in glyphs.decided
    probe = resolve_config(load_train_config(data=str(ANTS_BEES), strategy="feature-extraction"),
                           resolve_data(ANTS_BEES))
    assert "trainable_blocks" not in probe.decided


@pytest.mark.parametrize(("head_accuracy", "tried"), [(0.99, False), (0.6, True)])
def test_recipes_on_images_are_tried_only_where_a_head_leaves_room_to_show_a_gain(
        tiny_data: Path, monkeypatch: pytest.MonkeyPatch, head_accuracy: float, tried: bool) -> None:
    from imgcls.models.factory import create_model
    from imgcls.training import auto

    config = load_train_config(data=str(tiny_data), workers=0)
    source = resolve_data(tiny_data)
    resolved = resolve_config(config, source, announce=False)
    heads = [auto.Candidate("head (defaults)", resolved, head_accuracy, "5-fold on train features", 1.0, 0.3)]
    trials: list[str] = []
    monkeypatch.setattr(auto, "use_feature_cache", lambda *_: True)
    monkeypatch.setattr(auto, "search_heads", lambda *_, **__: heads)
    monkeypatch.setattr(auto, "image_cost", lambda *_: 1.0)

    def image_trial(candidate: object, *_: object) -> float:
        trials.append(candidate.strategy)  # type: ignore[attr-defined]
        return 0.9 - len(trials) / 100  # each later recipe scores lower: the first one tried wins

    monkeypatch.setattr(auto, "image_trial", image_trial)
    created = create_model("small_cnn", len(source.classes), pretrained=False, img_size=32)
    chosen, rows = auto.search(config, resolved, source, created, profile_data(source), fit=None)
    # 72 train images: a held-out fifth of 14, of which a 0.99 head gets all but 0.14 right
    assert bool(trials) is tried and len(rows) == 1 + len(trials)
    assert chosen.strategy == ("scratch" if tried else "feature-extraction")


def test_a_recipe_on_images_wins_only_by_a_whole_held_out_image() -> None:
    from imgcls.training.auto import Candidate, choose

    config = load_train_config(data="x")
    head = Candidate("head", config, 0.877, "5-fold on train features", 9.0, loss=0.3)
    other_head = Candidate("head, searched", config, 0.877, "5-fold on train features", 12.0, loss=0.28)
    staged = Candidate("staged", config, 0.878, "20% of train held out", 100.0)
    assert choose([head, other_head, staged], held_out=49) is other_head  # 0.001 better is not one image
    better = Candidate("finetune", config, 0.877 + 1 / 49, "20% of train held out", 80.0)
    assert choose([head, staged, better], held_out=49) is better
    assert choose([staged, better], held_out=49) is better


def test_config_yaml_reasons_read_back_and_old_runs_still_read(tmp_path: Path) -> None:
    values = load_train_config(data="x").model_dump()
    assert config_of_run(values, tmp_path).decided == {}  # a run written before reasons were recorded
    again = config_of_run({**values, "decided": {"hflip": "glyphs"}}, tmp_path)
    assert again.decided == {"hflip": "glyphs"}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({**values, "decided": {"hflip": "glyphs"}}))
    assert "decided" not in read_yaml_config(tmp_path / "config.yaml")  # --config RUN/config.yaml reruns it


@pytest.mark.slow
def test_zero_flags_search_writes_the_leaderboard_and_trains_the_winner(tiny_data: Path, tmp_path: Path) -> None:
    config = load_train_config(data=str(tiny_data), epochs=3, batch_size=16, workers=0, out=str(tmp_path),
                               time_budget="20s", logger=["none"])
    run = train(config)
    with (run.path / "leaderboard.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert rows and [r["rank"] for r in rows] == [str(i + 1) for i in range(len(rows))]
    assert sum(r["chosen"] == "yes" for r in rows) == 1
    accuracies = [float(r["heldout_accuracy"]) for r in rows]
    assert accuracies == sorted(accuracies, reverse=True) and all("train" in r["heldout"] for r in rows)
    assert any("defaults" in r["recipe"] for r in rows)  # today's recipe is always a contender
    recorded = yaml.safe_load((run.path / "config.yaml").read_text(encoding="utf-8"))
    assert "leaderboard.md" in recorded["decided"]["recipe"]
    chosen = next(r for r in rows if r["chosen"] == "yes")
    assert recorded["model"] in chosen["recipe"] and recorded["strategy"] in chosen["recipe"] + " feature-extraction"
    assert "Recipes tried (--auto)" in (run.path / "report.html").read_text(encoding="utf-8")
    assert "(chosen)" in (run.path / "leaderboard.md").read_text(encoding="utf-8")


def test_time_budget_reads_durations() -> None:
    from imgcls.errors import ConfigError

    assert load_train_config(time_budget="90s").time_budget == 90
    assert load_train_config(time_budget="5m").time_budget == 300
    assert load_train_config(time_budget=45).time_budget == 45
    with pytest.raises(ConfigError, match="--time-budget"):
        load_train_config(time_budget="soon")


def test_a_class_with_one_training_image_is_held_out_in_one_fold_without_a_library_warning() -> None:
    import warnings

    import numpy as np

    from imgcls.training.auto import _folds

    labels = np.array([0] * 8 + [1] * 8 + [2])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        folds = _folds(labels, seed=0)
    assert len(folds) == 2
    held_out = np.concatenate([test for _, test in folds])
    assert sorted(held_out.tolist()) == list(range(len(labels)))  # every image scored once, the lone one too
