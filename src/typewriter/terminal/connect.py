"""What every terminal command shares: errors in one line, and the exit codes.

A command that cannot reach the gateway, or that the gateway refuses, says so in
one line naming the URL (or the contract's error code and message) and exits
with a code a script can tell apart; it never shows a traceback.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import typer
from rich.console import Console

from typewriter.client import ApiError, ClientError, ConnectionFailed, ConnectionLost

__all__ = [
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_PIPE_CLOSED",
    "EXIT_UNREACHABLE",
    "exit_code_of",
    "describe",
    "reporting",
    "say_error",
]

EXIT_OK = 0
"""The answer ended ``stop`` or ``length``; a command did what it was asked."""
EXIT_ERROR = 1
"""The answer ended ``error``, or the gateway refused the request (its error is printed)."""
EXIT_UNREACHABLE = 3
"""The gateway could not be reached, or was lost mid-answer past every reconnect. Not 2:
that is a wrong command line (the command-line library's own code)."""
EXIT_INTERRUPTED = 130
"""Ctrl+C stopped the answer (128 + SIGINT, as shells report it)."""
EXIT_PIPE_CLOSED = 141
"""The pipe standard output writes to was closed (``| head``): the answer was stopped
(128 + SIGPIPE, as a program killed by it would report)."""


def say_error(console: Console, message: str) -> None:
    """One line on standard error, red on a terminal; never Markdown or markup."""
    console.print(f"typewriter: {message}", style="red", markup=False, highlight=False)


def exit_code_of(exc: ClientError) -> int:
    if isinstance(exc, ConnectionFailed | ConnectionLost):
        return EXIT_UNREACHABLE
    return EXIT_ERROR


def describe(exc: ClientError) -> str:
    """The one line for an error: the client's own text names the URL or the error code."""
    if isinstance(exc, ApiError):
        return str(exc)
    return str(exc) or type(exc).__name__


@contextlib.contextmanager
def reporting(err: Console) -> Iterator[None]:
    """Turn whatever the client raises into one line and the matching exit code."""
    try:
        yield
    except ClientError as exc:
        say_error(err, describe(exc))
        raise typer.Exit(exit_code_of(exc)) from None
