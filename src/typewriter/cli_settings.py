"""The ``serve`` flags, made from the fields of ``Settings``: a new setting gets its flag.

Every scalar setting is a flag named after it (``max_body_bytes`` is
``--max-body-bytes``), listed in its help group with its default; a list of
strings is a flag given once per item. Settings made of tables (``upstreams``,
``assistants``, ``retry``) are given in TOML or as JSON in their variable.

A flag's value reaches ``Settings`` as the text typed, so that a flag, a
variable and a TOML key are checked by the same rules and a wrong value is the
same one line whichever way it came.
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

import typer
from pydantic import SecretStr
from pydantic.fields import FieldInfo
from rich.markup import escape

from typewriter.config import ENV_PREFIX, GROUPS, Settings, group_of

__all__ = ["SettingFlag", "given_flags", "setting_flags", "with_setting_flags"]

F = TypeVar("F", bound=Callable[..., Any])

Kind = Literal["value", "switch", "list"]

_METAVARS: dict[Any, str] = {
    int: "INTEGER",
    float: "NUMBER",
    str: "TEXT",
    Path: "PATH",
    SecretStr: "SECRET",
}


@dataclass(frozen=True)
class SettingFlag:
    """One setting as the command line, the environment and the docs name it."""

    name: str
    kind: Kind
    metavar: str
    description: str
    group: str
    default: str | None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def variable(self) -> str:
        return ENV_PREFIX + self.name.upper()

    def help(self) -> str:
        shown = self.description
        if self.kind == "list":
            shown += " (give the flag once per item)"
        if self.default is not None:
            shown += f" [default: {self.default}]"
        return escape(shown)

    def option(self) -> Any:
        """The ``Annotated`` type typer reads; ``None`` always means "not given here"."""
        if self.kind == "switch":
            dashed = self.flag.removeprefix("--")
            info = typer.Option(
                f"{self.flag}/--no-{dashed}",
                help=self.help(),
                rich_help_panel=self.group,
                show_default=False,
            )
            return Annotated[bool | None, info]
        info = typer.Option(
            self.flag,
            metavar=self.metavar,
            help=self.help(),
            rich_help_panel=self.group,
            show_default=False,
        )
        if self.kind == "list":
            return Annotated[list[str] | None, info]
        return Annotated[str | None, info]


def setting_flags() -> list[SettingFlag]:
    """Every setting that has a flag, by help group, then in the order of ``Settings``."""
    flags = []
    for name, field in Settings.model_fields.items():
        kind = _kind(field.annotation)
        if kind is None:
            continue
        flags.append(
            SettingFlag(
                name=name,
                kind=kind,
                metavar=_metavar(field.annotation),
                description=field.description or "",
                group=group_of(name).title,
                default=_default_text(field),
            )
        )
    titles = [group.title for group in GROUPS]
    return sorted(flags, key=lambda flag: titles.index(flag.group))


def with_setting_flags(command: F) -> F:
    """Give ``command`` (which takes ``**settings``) one keyword parameter per flag.

    typer reads a command's parameters from its signature, so the flags are added
    there; the command receives each as a keyword, ``None`` when it was not given.
    """
    own = inspect.signature(command, eval_str=True)
    kept = [p for p in own.parameters.values() if p.kind is not p.VAR_KEYWORD]
    added = [
        inspect.Parameter(
            flag.name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=flag.option()
        )
        for flag in setting_flags()
    ]
    command.__signature__ = own.replace(parameters=[*kept, *added])  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in [*kept, *added]}
    return command


def given_flags(flags: dict[str, Any]) -> dict[str, Any]:
    """The flags typed on the command line: one not given is ``None`` (or no items at all
    for a list), and must leave the variable or TOML key below it in force."""
    return {name: value for name, value in flags.items() if value is not None and value != ()}


def _optional_of(annotation: Any) -> Any:
    """``X | None`` → ``X``; anything else as it is."""
    if get_origin(annotation) in (Union, types.UnionType):
        rest = [arg for arg in get_args(annotation) if arg is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return annotation


def _kind(annotation: Any) -> Kind | None:
    bare = _optional_of(annotation)
    if bare is bool:
        return "switch"
    if get_origin(bare) is list:
        return "list" if get_args(bare) == (str,) else None
    if bare in _METAVARS or get_origin(bare) is Literal:
        return "value"
    return None


def _metavar(annotation: Any) -> str:
    bare = _optional_of(annotation)
    if get_origin(bare) is Literal:
        return "|".join(str(choice) for choice in get_args(bare))
    if get_origin(bare) is list:
        return "TEXT"
    return _METAVARS.get(bare, "")


def _default_text(field: FieldInfo) -> str | None:
    """The default as an operator would type it; ``None`` when the description says it."""
    value = field.get_default(call_default_factory=True)
    if value is None:
        return None
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return ", ".join(str(item) for item in value) or "none"
    return str(value)
