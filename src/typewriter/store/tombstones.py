"""Streams the broker forgot but the store remembers: the answers they wrote.

An in-process broker loses every stream when the server restarts, and a Redis
broker's keys can be flushed; the store still has the answer each stream wrote,
under its ``stream_id``. Such a stream has existed and is gone, which the
contract says with ``410 stream_expired`` rather than ``404``, for as long as a
broker would have kept its own tombstone, and only to the stream's owner.
"""

from __future__ import annotations

import sqlalchemy as sa

from typewriter.store.database import Database
from typewriter.store.schema import messages

__all__ = ["TOMBSTONE_SECONDS", "answered_stream"]

TOMBSTONE_SECONDS = 86400.0
"""How long after its retention a finished stream answers 410 (the brokers' own default)."""


async def answered_stream(store: Database, owner: str, stream_id: str, since: float) -> bool:
    """Whether ``owner`` has an answer written by ``stream_id`` that ended at or after
    ``since`` (one still marked as streaming counts from when it started)."""
    ended = sa.func.coalesce(messages.c.finished_at, messages.c.created_at)
    query = (
        sa.select(messages.c.id)
        .where(messages.c.stream_id == stream_id, messages.c.owner == owner, ended >= since)
        .limit(1)
    )
    async with store.transaction() as db:
        return (await db.execute(query)).first() is not None
