"""A ``typer.Typer`` whose help shows a flag as a flag, without a ``<bool>`` type next to it.

typer labels every option with its Python type, on/off switches and ``--help``
included, which reads as if ``--insecure`` took a value. An empty metavar
leaves a flag's type column blank.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import typer
from typer.core import TyperCommand, TyperGroup, TyperOption

__all__ = ["Typer"]

F = TypeVar("F", bound=Callable[..., Any])


def _plain_flags(params: list[Any]) -> None:
    for param in params:
        if isinstance(param, TyperOption) and param.is_flag:
            param.metavar = ""


def _plain_help(option: TyperOption | None) -> TyperOption | None:
    if option is not None:
        option.metavar = ""
    return option


class _Command(TyperCommand):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _plain_flags(self.params)

    def get_help_option(self, ctx: Any) -> TyperOption | None:
        return _plain_help(super().get_help_option(ctx))


class _Group(TyperGroup):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _plain_flags(self.params)

    def get_help_option(self, ctx: Any) -> TyperOption | None:
        return _plain_help(super().get_help_option(ctx))


class Typer(typer.Typer):
    """``typer.Typer`` with the plain-flag help for itself and every command it makes."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("cls", _Group)
        super().__init__(**kwargs)

    def command(self, *args: Any, **kwargs: Any) -> Callable[[F], F]:
        kwargs.setdefault("cls", _Command)
        decorate: Callable[[F], F] = super().command(*args, **kwargs)
        return decorate
