"""Feedback on answers: at most one rating per message, read joined onto it.

Rating again replaces the earlier rating rather than adding one, in one
statement (``INSERT … ON CONFLICT DO UPDATE``), so ratings sent at once each
replace the other instead of colliding on the key; and a message
is always read together with its rating (an outer join), so listing a
conversation costs one query however many of its answers were rated.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from typewriter.store.records import Feedback
from typewriter.store.schema import feedback, messages

__all__ = ["delete_feedback", "feedback_of", "rate", "with_feedback"]

Upsert = postgresql.Insert | sqlite.Insert


def with_feedback() -> sa.Select[Any]:
    """Messages, each with its rating's columns (``None`` where it has none)."""
    return sa.select(
        messages,
        feedback.c.rating,
        feedback.c.comment,
        feedback.c.created_at.label("feedback_at"),
    ).join(feedback, feedback.c.message_id == messages.c.id, isouter=True)


def feedback_of(row: RowMapping) -> Feedback | None:
    """The rating in a row of :func:`with_feedback`, if the message has one."""
    rating = row.get("rating")
    if rating is None:
        return None
    return Feedback(row["id"], rating, row["comment"], row["feedback_at"])


async def rate(
    db: AsyncConnection, owner: str, message_id: str, rating: int, comment: str | None
) -> Feedback:
    now = time.time()
    insert = _dialect_insert(db.dialect.name)(feedback).values(
        message_id=message_id, owner=owner, rating=rating, comment=comment, created_at=now
    )
    replaced = {"rating": rating, "comment": comment, "created_at": now}
    await db.execute(
        insert.on_conflict_do_update(index_elements=[feedback.c.message_id], set_=replaced)
    )
    return Feedback(message_id, rating, comment, now)


def _dialect_insert(dialect: str) -> Callable[[sa.Table], Upsert]:
    """The engine's own INSERT, the one that knows ``ON CONFLICT`` (both spell it alike)."""
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


async def delete_feedback(db: AsyncConnection, message_ids: sa.Select[Any]) -> None:
    await db.execute(feedback.delete().where(feedback.c.message_id.in_(message_ids)))
