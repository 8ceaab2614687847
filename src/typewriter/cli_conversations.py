"""Your stored conversations, from a terminal: list, show, export, delete.

They speak to a running gateway (``--url``, ``--api-key``, or TYPEWRITER_URL and
TYPEWRITER_API_KEY), as ``typewriter chat`` does, and see what the key's user
sees. Export goes through the gateway's own export, the one the page's Export
action uses, so the file is the same from both.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from typewriter.cli_help import Typer
from typewriter.terminal.options import DEFAULT_URL, ApiKey, Url

__all__ = ["conversations_app"]

conversations_app = Typer(no_args_is_help=True, help=__doc__)

ConversationId = Annotated[str, typer.Argument(metavar="ID", help="the conversation's id (conv_…)")]


class Format(StrEnum):
    markdown = "markdown"
    json = "json"


@conversations_app.command("list")
def list_conversations(
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    limit: Annotated[int, typer.Option(min=1, max=100, help="how many, newest first")] = 20,
    search: Annotated[
        str | None, typer.Option("--search", "-s", metavar="TEXT", help="title or text contains")
    ] = None,
) -> None:
    """Your conversations, newest first: id, title, assistant, last updated."""
    from typewriter.client import Client
    from typewriter.terminal import show
    from typewriter.terminal.connect import reporting

    out, err = _consoles()
    query: dict[str, object] = {"limit": limit}
    if search:
        query["q"] = search
    with Client(url, api_key=api_key) as client, reporting(err):
        show.conversation_table(out, client.conversations(**query))


@conversations_app.command("show")
def show_conversation(
    conversation_id: ConversationId, url: Url = DEFAULT_URL, api_key: ApiKey = None
) -> None:
    """A conversation's messages (its newest branch), rendered as Markdown on a terminal."""
    from typewriter.client import Client
    from typewriter.terminal import show
    from typewriter.terminal.connect import reporting

    out, err = _consoles()
    with Client(url, api_key=api_key) as client, reporting(err):
        branch = client.branch(conversation_id)
    title = branch.get("title") or "untitled"
    out.print(f"# {title}", style="bold" if out.is_terminal else None, markup=False)
    out.print()
    for stored in branch.get("messages") or []:
        show.message(out, stored)


@conversations_app.command("export")
def export(
    conversation_id: ConversationId,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    format: Annotated[Format, typer.Option("--format", "-f", help="file format")] = Format.markdown,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", metavar="FILE", help="write it there (default: stdout)"),
    ] = None,
) -> None:
    """The conversation as a Markdown or JSON file, exactly as the page's Export saves it."""
    from typewriter.client import Client
    from typewriter.terminal.connect import reporting

    _, err = _consoles()
    with Client(url, api_key=api_key) as client, reporting(err):
        text = client.export(conversation_id, format=format.value)
    if output is None:
        typer.echo(text, nl=not text.endswith("\n"))
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        typer.echo(f"typewriter: cannot write {output}: {exc.strerror}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"wrote {output}", err=True)


@conversations_app.command("delete")
def delete(
    conversation_id: ConversationId,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")] = False,
) -> None:
    """Delete a conversation and its messages (an answer it is writing is stopped)."""
    from typewriter.client import Client
    from typewriter.terminal.connect import reporting

    _, err = _consoles()
    with Client(url, api_key=api_key) as client, reporting(err):
        if not yes:
            stored = client.conversation(conversation_id)
            title = stored.get("title") or "untitled"
            count = len(stored.get("messages") or [])
            if not typer.confirm(f"delete {conversation_id} ({title}, {count} messages)?"):
                typer.echo("kept", err=True)
                raise typer.Exit(1)
        client.delete_conversation(conversation_id)
    typer.echo(f"deleted {conversation_id}", err=True)


def _consoles() -> tuple[Console, Console]:
    return Console(highlight=False), Console(stderr=True, highlight=False)
