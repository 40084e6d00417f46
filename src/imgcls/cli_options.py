"""Command-line options generated from :class:`~imgcls.config.TrainConfig`'s fields.

Each setting is declared once, as a field: its name gives the flag (``batch_size`` -> ``--batch-size``),
its ``description`` the help, its type the kind of option (booleans are ``--x/--no-x`` pairs, lists
repeat or take comma lists, Literal types show their choices) and its default the text in parentheses
("decided from the data" for None, unless the description ends with a parenthesis saying what decides it). Every option
defaults to None so that an option left out never overrides the YAML file; TrainConfig validates the values
(one place for every rule and message, whether a value comes from a flag, a YAML file or Python).
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from collections.abc import Callable, Iterable
from typing import Any, Literal, Optional, Union

import typer
from pydantic.fields import FieldInfo

from imgcls.config import TrainConfig, flag_name

UNSET_DEFAULT = "decided from the data"


def _members(annotation: Any) -> list[Any]:
    """The types of a union (``float | Literal["auto"] | None`` -> float, Literal["auto"]), None left out."""
    if typing.get_origin(annotation) in (Union, types.UnionType):
        return [a for a in typing.get_args(annotation) if a is not type(None)]
    return [annotation]


def _choices(annotation: Any) -> list[str] | None:
    """The values of a Literal field (of a list field: of its items); None when the values are free."""
    members = _members(annotation)
    if len(members) == 1 and typing.get_origin(members[0]) is list:
        members = _members(typing.get_args(members[0])[0])
    if not all(typing.get_origin(m) is Literal for m in members):
        return None
    return [str(value) for member in members for value in typing.get_args(member)]


def _option_type(annotation: Any) -> Any:
    """The type typer parses: bool, int, float, list[str] or str (Literal and mixed unions arrive as text)."""
    members = _members(annotation)
    if len(members) == 1:
        if typing.get_origin(members[0]) is list:
            return list[str]
        if members[0] in (bool, int, float):
            return members[0]
    return str


def _default_text(field: FieldInfo) -> str:
    default = field.get_default(call_default_factory=True)
    if default is None:
        return UNSET_DEFAULT
    if isinstance(default, bool):
        return "yes" if default else "no"
    if isinstance(default, float):
        return f"{default:g}"
    if isinstance(default, list):
        return ",".join(map(str, default)) or "none"
    return str(default)


def option_help(name: str, *, default: bool = True) -> str:
    """The help of a TrainConfig field: its description, its choices, then its default in parentheses
    (a description that ends in parentheses says itself what decides the default)."""
    field = TrainConfig.model_fields[name]
    text = (field.description or "").rstrip(".")
    cut = text.rfind(" (") if text.endswith(")") else -1
    head, own_default = (text[:cut], text[cut:]) if cut > 0 else (text, "")
    choices = _choices(field.annotation)
    if choices:
        head += ": " + " | ".join(choices)
    if not default:
        return head + own_default + "."
    return head + (own_default or f" ({_default_text(field)})") + "."


def train_option(name: str, panel: str | None = None) -> inspect.Parameter:
    """The keyword parameter, typer option included, for the TrainConfig field ``name``."""
    field = TrainConfig.model_fields[name]
    kind = _option_type(field.annotation)
    flag = flag_name(name)
    declaration = f"{flag}/--no-{flag[2:]}" if kind is bool else flag
    option = typer.Option(None, declaration, help=option_help(name), rich_help_panel=panel, show_default=False)
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=Optional[kind])


def train_fields(only: Iterable[str] | None = None, exclude: Iterable[str] = ()) -> list[str]:
    """TrainConfig's field names, in declaration order (``only`` picks a subset); ``data`` is an argument."""
    names = [n for n in TrainConfig.model_fields if n != "data" and n not in set(exclude)]
    if only is not None:
        wanted = set(only)
        names = [n for n in names if n in wanted]
    return names


def with_train_options(*, only: Iterable[str] | None = None, exclude: Iterable[str] = (),
                       panel: str | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a command one option per TrainConfig field (``only`` / ``exclude`` choose which).

    The command declares its own parameters and ``**settings``; it is called with the options the user gave
    (those not None) in ``settings``, named as the fields.
    """
    names = train_fields(only, exclude)

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        own = [p for p in inspect.signature(command, eval_str=True).parameters.values()
               if p.kind is not inspect.Parameter.VAR_KEYWORD]
        generated = [train_option(name, panel) for name in names]

        @functools.wraps(command)
        def with_options(**values: Any) -> Any:
            settings = {name: values.pop(name) for name in names}
            return command(**values, **{k: v for k, v in settings.items() if v is not None})

        parameters = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own] + generated
        with_options.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
        with_options.__annotations__ = {p.name: p.annotation for p in parameters}
        return with_options

    return decorate
