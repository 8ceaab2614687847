"""Finding conversations by what they say: a substring of the title or of any message.

A plain ``LIKE`` on ``lower()`` of both sides, the same SQL on SQLite and PostgreSQL. A
full-text index would be faster on a large store, but it finds words, and splits text
into words on spaces: Chinese or Japanese, written without spaces, would only be found
by whole sentences. A substring is found wherever it is, in any script. ``lower()`` folds
ASCII on SQLite and all of Unicode on PostgreSQL; every script without case is found as
typed on both.

The user's text is matched literally: ``%`` and ``_`` (``LIKE``'s wildcards) and the
escape character itself are escaped, and the text is a bound parameter, never SQL.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from typewriter.store.schema import conversations, messages

__all__ = ["SEARCH_LENGTH", "like_pattern", "matching", "snippets"]

SEARCH_LENGTH = 200
"""The longest search text taken (``422`` beyond): a ``LIKE`` scans, so it stays short."""

_ESCAPE = "\\"
_BEFORE, _AFTER = 30, 90  # characters of a snippet around the match
_SPACES = re.compile(r"\s+")


def like_pattern(text: str) -> str:
    """``%text%`` where every character of ``text`` stands for itself."""
    escaped = (
        text.lower()
        .replace(_ESCAPE, _ESCAPE * 2)
        .replace("%", _ESCAPE + "%")
        .replace("_", _ESCAPE + "_")
    )
    return f"%{escaped}%"


def matching(owner: str, text: str) -> sa.ColumnElement[bool]:
    """A conversation whose title, or one of whose messages, holds ``text`` (any case)."""
    pattern = like_pattern(text)
    in_messages = (
        sa.select(messages.c.id)
        .where(
            messages.c.conversation_id == conversations.c.id,
            messages.c.owner == owner,
            sa.func.lower(messages.c.text).like(pattern, escape=_ESCAPE),
        )
        .exists()
    )
    return sa.or_(sa.func.lower(conversations.c.title).like(pattern, escape=_ESCAPE), in_messages)


async def snippets(
    db: AsyncConnection, owner: str, conversation_ids: Sequence[str], text: str
) -> dict[str, str]:
    """For each conversation whose messages hold ``text``, a line around its first match.

    It shows why a conversation was found when its title does not say (the words were in
    an answer). One query for the whole page of results; a conversation found by its title
    alone has none.
    """
    if not conversation_ids:
        return {}
    rows = await db.execute(
        sa.select(messages.c.conversation_id, messages.c.text)
        .where(
            messages.c.conversation_id.in_(conversation_ids),
            messages.c.owner == owner,
            sa.func.lower(messages.c.text).like(like_pattern(text), escape=_ESCAPE),
        )
        .order_by(messages.c.conversation_id, messages.c.position)
    )
    found: dict[str, str] = {}
    for conversation_id, message_text in rows:
        if conversation_id not in found:
            found[conversation_id] = snippet(message_text, text)
    return found


def snippet(message_text: str, text: str) -> str:
    """The message's words around the first ``text`` in it, on one line, ``…`` where cut."""
    flat = _SPACES.sub(" ", message_text).strip()
    at = flat.lower().find(_SPACES.sub(" ", text.lower()))
    at = max(at, 0)  # a match the database folded differently: the message's start
    start, end = max(0, at - _BEFORE), min(len(flat), at + len(text) + _AFTER)
    return ("…" if start else "") + flat[start:end].strip() + ("…" if end < len(flat) else "")
