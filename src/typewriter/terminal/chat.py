"""``typewriter chat``: one question for scripts, or a conversation at a prompt.

With a question (an argument, ``-`` or a pipe on standard input) it asks once,
prints the answer and exits with a code a script can test. Without one, on a
terminal, it opens a conversation at a prompt (see ``session``).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from typing import Any

import typer
from rich.console import Console

from typewriter.client import Client, ClientError
from typewriter.terminal.connect import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PIPE_CLOSED,
    describe,
    exit_code_of,
    reporting,
    say_error,
)
from typewriter.terminal.prompt import Prompt, history_path
from typewriter.terminal.session import ChatSession

__all__ = ["ChatArgs", "parse_options", "run"]


@dataclass(frozen=True)
class ChatArgs:
    question: str | None
    url: str
    api_key: str | None
    assistant: str | None
    continue_last: bool
    conversation: str | None
    list_assistants: bool
    options: dict[str, Any] | None


def parse_options(text: str | None) -> dict[str, Any] | None:
    """``--options``: a JSON object, checked here so a typo is a usage error, not a 422."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise typer.BadParameter(f"not JSON: {exc}", param_hint="--options") from None
    if not isinstance(value, dict):
        raise typer.BadParameter("must be a JSON object", param_hint="--options")
    return value


def _question(given: str | None) -> str | None:
    """The argument, or standard input when told ``-`` or when it is a pipe."""
    if given == "-" or (given is None and not sys.stdin.isatty()):
        text = sys.stdin.read().strip("\n")
        if not text.strip():
            raise typer.BadParameter("standard input held nothing to ask", param_hint="QUESTION")
        return text
    return given


def run(args: ChatArgs) -> int:
    out = Console(highlight=False)
    err = Console(stderr=True, highlight=False)
    if args.list_assistants:
        return _list_assistants(args, out, err)
    question = _question(args.question)
    if args.continue_last and args.conversation:
        raise typer.BadParameter("give --continue or --conversation, not both")
    with Client(args.url, api_key=args.api_key) as client:
        session = ChatSession(client, out, err, assistant=args.assistant, options=args.options)
        if question is None:
            session.banner()
        try:
            with reporting(err):
                _pick_conversation(client, session, args, quiet=question is not None, err=err)
            if question is not None:
                return session.ask(question)
        except ClientError as exc:
            say_error(err, describe(exc))
            return exit_code_of(exc)
        except KeyboardInterrupt:
            err.print("stopped", style="yellow")
            return EXIT_INTERRUPTED
        except BrokenPipeError:
            # the answer was stopped; what Python would still flush goes nowhere, quietly
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return EXIT_PIPE_CLOSED
        return session.interact(Prompt(history_path()))


def _list_assistants(args: ChatArgs, out: Console, err: Console) -> int:
    """One line each: name, what it is (its description, else its model), the default marked."""
    with Client(args.url, api_key=args.api_key) as client, reporting(err):
        served = client.assistants()
    for assistant in served.data:
        name = str(assistant.get("name"))
        mark = "\t(default)" if name == served.default else ""
        what = assistant.get("description") or assistant.get("model") or ""
        out.file.write(f"{name}\t{what}{mark}\n")  # as written: rich would expand the tabs
    return EXIT_OK


def _pick_conversation(
    client: Client, session: ChatSession, args: ChatArgs, *, quiet: bool, err: Console
) -> None:
    """``--conversation ID`` or ``-c`` (the newest conversation): the one asked into."""
    wanted = args.conversation
    if args.continue_last:
        newest = client.conversations(limit=1)
        if not newest:
            err.print("no conversation yet: a new one starts", style="dim")
            return
        wanted = str(newest[0]["id"])
    if wanted is None:
        return
    if quiet:  # a script's question: no history on the screen, but the id is checked
        session.conversation_id = str(client.conversation(wanted)["id"])
    else:
        session.open(wanted)
