"""Zero flags: settings decided from the data (with reasons), and the --auto recipe search with its leaderboard."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml

from imgcls.config import config_of_run, load_train_config, read_yaml_config
from imgcls.data.profile import profile_data
from imgcls.data.source import resolve_data
from imgcls.training.auto import wants_auto
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
