"""Training settings: defaults <- YAML <- flags, validated once, every mistake a one-line ConfigError."""

from __future__ import annotations

import pytest

from imgcls.config import config_of_run, config_to_yaml, load_train_config, read_yaml_config
from imgcls.errors import ConfigError


def test_flags_win_over_yaml_which_wins_over_defaults(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 3\nbatch-size: 8\nlr: 0.01\n")
    config = load_train_config(path, epochs=5, lr=None)
    assert (config.epochs, config.batch_size, config.lr, config.optimizer) == (5, 8, 0.01, "adamw")


def test_python_callers_may_pass_paths(tmp_path):
    config = load_train_config(None, data=tmp_path / "photos", out=tmp_path / "runs")
    assert (config.data, config.out) == (str(tmp_path / "photos"), str(tmp_path / "runs"))


def test_yaml_round_trip_keeps_every_setting(tmp_path):
    config = load_train_config(None, data="photos", epochs=2, strategy="linear-probe", precision=32)
    path = tmp_path / "config.yaml"
    path.write_text(config_to_yaml(config))
    assert load_train_config(path) == config
    assert config.strategy == "feature-extraction" and config.precision == "32"


@pytest.mark.parametrize("text,message", [
    ("epochz: 3\n", "unknown setting 'epochz' (did you mean epochs?)"),
    ("epochs: [1,\n", "not valid YAML at line"),
    ("- a\n- b\n", "must be a mapping"),
    ("epochs: -1\n", "--epochs: must be greater than or equal to 1 (got -1)"),
    ("optimizer: adamx\n", "--optimizer: must be 'adamw', 'sgd' or 'adam' (got 'adamx')"),
    ("val_split: 1\n", "--val-split"),
    ("lr: fast\n", "--lr"),
])
def test_bad_config_files_say_what_and_where(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_train_config(path)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_every_wrong_value_is_named_at_once():
    with pytest.raises(ConfigError) as info:
        load_train_config(None, epochs=0, batch_size=0, scheduler="cosin")
    assert all(flag in str(info.value) for flag in ("--epochs", "--batch-size", "--scheduler"))


def test_non_utf8_and_missing_files(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("epochs: 3 # caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        read_yaml_config(path)
    with pytest.raises(ConfigError, match="config file not found"):
        read_yaml_config(tmp_path / "missing.yaml")
    assert read_yaml_config(_write(tmp_path / "empty.yaml", "")) == {}


def test_yaml_is_read_with_the_safe_loader(tmp_path):
    path = _write(tmp_path / "evil.yaml", "epochs: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        read_yaml_config(path)


def test_a_tampered_run_config_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="run directory is damaged"):
        config_of_run({"epochs": "many"}, tmp_path / "config.yaml")


def _write(path, text):  # noqa: ANN001, ANN202
    path.write_text(text)
    return path


@pytest.mark.parametrize(("value", "message"), [("0", "at least 1"), ("abc", "a number of blocks"),
                                                 (0, "at least 1")])
def test_trainable_blocks_takes_a_count_or_all(value, message):
    with pytest.raises(ConfigError, match=f"--trainable-blocks: must be {message}"):
        load_train_config(None, trainable_blocks=value)
    assert load_train_config(None, trainable_blocks="4").blocks_to_train == 4
    assert load_train_config(None, trainable_blocks="all").blocks_to_train is None
