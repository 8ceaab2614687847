"""Stored conversations on the screen: a table of them, and their messages as Markdown.

Shared by ``typewriter conversations`` and the chat's ``/conversations``. On a
terminal a table and rendered Markdown; elsewhere plain tab-separated lines and
the messages' text as written, for scripts.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.markdown import Markdown
from rich.table import Table
from rich.text import Text

__all__ = ["conversation_table", "message", "note_of"]

_NOTES = {
    "cancelled": "stopped",
    "length": "cut at the length limit",
    "error": "failed",
}


def _when(stamp: Any) -> str:
    """A stored time (seconds since the epoch) as ``YYYY-MM-DD HH:MM`` UTC."""
    if isinstance(stamp, int | float) and not isinstance(stamp, bool):
        return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d %H:%M")
    return str(stamp or "")


def conversation_table(console: Console, conversations: list[dict[str, Any]]) -> None:
    """id, title, assistant, updated: a table on a terminal, tab-separated lines otherwise."""
    rows = [
        (
            str(c.get("id", "")),
            str(c.get("title") or ""),
            str(c.get("assistant") or ""),
            _when(c.get("updated_at")),
        )
        for c in conversations
    ]
    if not console.is_terminal:  # tab-separated, as written (rich would expand the tabs)
        for row in rows:
            console.file.write("\t".join(cell.replace("\t", " ") for cell in row) + "\n")
        console.file.flush()
        return
    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("id", no_wrap=True, style="cyan")
    table.add_column("title", overflow="ellipsis", no_wrap=True, ratio=1)
    table.add_column("assistant", no_wrap=True)
    table.add_column("updated", no_wrap=True, style="dim")
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    console.print(table)


def note_of(stored: dict[str, Any]) -> str | None:
    """Why an answer is not whole, from its stored status and finish reason."""
    if stored.get("role") != "assistant":
        return None
    if stored.get("status") == "streaming":
        return "still being written"
    if stored.get("status") == "interrupted":
        return "interrupted by the server"
    return _NOTES.get(str(stored.get("finish_reason")))


def message(console: Console, stored: dict[str, Any]) -> None:
    """One stored message: a heading (who, when), its reasoning dimmed, its text as Markdown."""
    if stored.get("role") == "user":
        who = "You"
    else:
        who = f"Assistant ({stored.get('assistant') or stored.get('model') or '?'})"
    note = note_of(stored)
    if not console.is_terminal:
        console.print(f"## {who}", markup=False, highlight=False, soft_wrap=True)
        console.print(str(stored.get("text") or ""), markup=False, highlight=False, soft_wrap=True)
        if note:
            console.print(f"({note})", markup=False, highlight=False, soft_wrap=True)
        console.print()
        return
    heading = Text(who, style="bold green" if who == "You" else "bold blue")
    heading.append(f"  {_when(stored.get('created_at'))}", style="dim")
    console.print(heading)
    if stored.get("reasoning"):
        console.print(Text(str(stored["reasoning"]).strip("\n"), style="dim italic"))
    console.print(Markdown(str(stored.get("text") or "")))
    if note:
        console.print(Text(f"({note})", style="yellow"))
    console.print()
