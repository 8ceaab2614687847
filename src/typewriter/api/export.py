"""A conversation written out as one file: Markdown to read, or JSON to process.

``GET /v1/conversations/{id}/export`` serves both, for the page's Export action and for
the terminal client alike, so a conversation reads the same wherever it was saved. The
Markdown holds what the user saw: the title, then each question and answer under its
speaker. An answer's reasoning is left out (it is not the answer, and an assistant may
not show it at all); an answer cut short says how.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from urllib.parse import quote

from typewriter.store.records import Conversation, Message

__all__ = ["attachment_disposition", "markdown_of"]

_SPEAKERS = {"user": "You", "assistant": "Assistant", "system": "System"}
_ENDINGS = {
    "cancelled": "stopped",
    "length": "cut at the length limit",
    "error": "failed",
    "content_filter": "withheld by the model's filter",
}
_UNSAFE = re.compile(r"[^\w-]+")


def markdown_of(conversation: Conversation, messages: list[Message]) -> str:
    """The conversation as Markdown: ``# title``, then one section per message."""
    parts = [f"# {' '.join(conversation.title.split()) or 'Untitled'}", ""]
    for message in messages:
        heading = f"## {_SPEAKERS.get(message.role, message.role.title())}"
        if message.role == "assistant" and message.model:
            heading += f" ({message.model})"
        parts += [heading, "", f"*{_when(message.created_at)}*", ""]
        if message.attachments:
            count = len(message.attachments)
            parts += [f"*{count} image{'s' if count > 1 else ''} attached*", ""]
        if message.text:
            parts += [message.text.rstrip("\n"), ""]
        note = _note(message)
        if note:
            parts += [f"*{note}*", ""]
    return "\n".join(parts)


def _when(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _note(message: Message) -> str | None:
    """How an answer ended, when it did not end on its own."""
    if message.role != "assistant":
        return None
    if message.status == "streaming":
        return "(still being written)"
    if message.status == "interrupted":
        return "(interrupted)"
    ending = _ENDINGS.get(message.finish_reason or "")
    return f"({ending})" if ending else None


def attachment_disposition(conversation: Conversation, extension: str) -> str:
    """``Content-Disposition`` for a download named after the title.

    The ASCII ``filename`` carries the id (safe anywhere); ``filename*`` the title, with
    every run of characters but letters, digits, ``-`` and ``_`` made one ``-`` (dots too),
    so no title can reach outside the folder it is saved in or pass for another type.
    """
    ascii_name = f"conversation-{conversation.id}.{extension}"
    title = unicodedata.normalize("NFC", conversation.title)
    stem = _UNSAFE.sub("-", title).strip("-_")[:60].strip("-_") or "conversation"
    return (
        f'attachment; filename="{ascii_name}"; '
        f"filename*=UTF-8''{quote(f'{stem}.{extension}', safe='')}"
    )
