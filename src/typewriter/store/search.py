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

import sqlalchemy as sa

from typewriter.store.schema import conversations, messages

__all__ = ["SEARCH_LENGTH", "like_pattern", "matching"]

SEARCH_LENGTH = 200
"""The longest search text taken (``422`` beyond): a ``LIKE`` scans, so it stays short."""

_ESCAPE = "\\"


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
