"""The options of train, lr-find and bench come from TrainConfig's fields: one declaration per setting."""

from __future__ import annotations

from typing import Any

import typer
from typer.testing import CliRunner

from imgcls.cli import BENCH_SETTINGS, app
from imgcls.cli_options import option_help, with_train_options
from imgcls.config import TrainConfig, flag_name


def _options(command: str) -> dict[str, Any]:
    """Flag -> the parsed command's option (its ``help``), as ``imgcls COMMAND --help`` shows them."""
    group = typer.main.get_command(app)
    params = group.commands[command].params  # type: ignore[attr-defined]
    return {flag: p for p in params if p.param_type_name == "option" for flag in p.opts}


def test_every_train_setting_is_a_flag_of_train_with_its_help() -> None:
    options = _options("train")
    for name, field in TrainConfig.model_fields.items():
        if name == "data":  # the DATA argument
            continue
        assert flag_name(name) in options, f"TrainConfig.{name} has no flag"
        assert field.description, f"TrainConfig.{name} has no description (the flag's help)"
        assert options[flag_name(name)].help == option_help(name)


def test_lr_find_takes_every_setting_but_out_and_bench_its_subset() -> None:
    lr_find, bench = _options("lr-find"), _options("bench")
    assert all(flag_name(n) in lr_find for n in TrainConfig.model_fields if n not in ("data", "out"))
    assert lr_find["--out"].help.startswith("Folder for lr_find.png")
    assert all(flag_name(n) in bench for n in BENCH_SETTINGS)
    assert "--epochs" not in bench


def test_help_shows_choices_and_defaults() -> None:
    assert option_help("optimizer") == "Optimizer: adamw | sgd | adam (adamw)."
    assert option_help("hflip") == "Random horizontal flips (yes)."
    assert option_help("weight_decay") == "Weight decay (0.01)."
    assert option_help("img_size").endswith("(the model's own; scratch nets: the data's).")  # decided later


def test_options_given_reach_the_command_as_settings_and_the_rest_stay_unset() -> None:
    seen: dict[str, Any] = {}
    demo = typer.Typer()

    @demo.command()
    @with_train_options(only=("epochs", "lr", "hflip", "logger", "precision"))
    def run(data: str = typer.Argument(...), **settings: Any) -> None:
        seen.update(data=data, settings=settings)

    result = CliRunner().invoke(demo, ["photos", "--epochs", "3", "--lr", "auto", "--no-hflip",
                                       "--logger", "csv", "--logger", "mlflow,none"])
    assert result.exit_code == 0, result.output
    assert seen == {"data": "photos", "settings": {"epochs": 3, "lr": "auto", "hflip": False,
                                                   "logger": ["csv", "mlflow,none"]}}
    config = TrainConfig(**seen["settings"])  # lists and text are TrainConfig's to validate
    assert (config.lr, config.logger, config.precision) == ("auto", ["csv", "mlflow"], None)
