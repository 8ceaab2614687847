"""Token usage per user, assistant and day, summed in SQL from the answers' rows.

The usage JSON an answer ends with is also kept as numbers in columns of its row
(``usage_columns``, written by ``answers.finish`` and backfilled by the migration
that added them): a budget will check this sum on every ask, and summing integer
columns over the ``(owner, created_at)`` index is the same cheap query on SQLite
and PostgreSQL, where extracting JSON in SQL is written differently on each and
parsing it in Python would read every answer of the window.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from typewriter.store.schema import messages

__all__ = ["DayUsage", "usage_columns", "usage_per_day"]

_DAY = 86400
_FIELDS = ("prompt_tokens", "completion_tokens", "total_tokens")


def usage_columns(usage: dict[str, Any] | None) -> dict[str, Any]:
    """The columns of a usage JSON object: its counts (``None`` where absent or not a
    whole number) and whether it says it was estimated."""
    usage = usage if isinstance(usage, dict) else {}
    values: dict[str, Any] = {}
    for field in _FIELDS:
        value = usage.get(field)
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
        values[field] = value if ok else None
    values["usage_estimated"] = usage.get("estimated") is True if usage else None
    return values


@dataclass(frozen=True, slots=True)
class DayUsage:
    """One assistant's answers to one user on one UTC day."""

    date: dt.date
    assistant: str
    answers: int
    without_usage: int
    estimated: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int

    COUNTS = (
        "answers",
        "without_usage",
        "estimated",
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
    )

    def public(self) -> dict[str, Any]:
        return {"date": self.date.isoformat(), "assistant": self.assistant, **self.counts()}

    def counts(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.COUNTS}


def _epoch(day: dt.date) -> float:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()


def _day_number(dialect: str) -> sa.ColumnElement[Any]:
    """Days since the epoch of ``created_at`` (UTC): ``floor`` on PostgreSQL, whose cast
    to an integer rounds; a cast on SQLite, which has ``floor`` only in some builds and
    whose cast truncates, the same for times after 1970."""
    days = messages.c.created_at / _DAY
    if dialect == "postgresql":
        return sa.cast(sa.func.floor(days), sa.Integer)
    return sa.cast(days, sa.Integer)


async def usage_per_day(
    db: AsyncConnection,
    owner: str,
    first: dt.date,
    last: dt.date,
    assistant: str | None = None,
) -> list[DayUsage]:
    """The owner's answers from ``first`` to ``last`` (UTC days, both included), summed
    per day and assistant, oldest day first, then by assistant."""
    day = _day_number(db.dialect.name).label("day")
    name = sa.func.coalesce(messages.c.assistant, "").label("assistant")
    missing = sa.case((messages.c.total_tokens.is_(None), 1), else_=0)
    estimated = sa.case((messages.c.usage_estimated.is_(True), 1), else_=0)

    def total(column: sa.ColumnElement[Any]) -> sa.ColumnElement[int]:
        return sa.func.coalesce(sa.func.sum(column), 0)

    query = (
        sa.select(
            day,
            name,
            sa.func.count().label("answers"),
            total(missing).label("without_usage"),
            total(estimated).label("estimated"),
            total(messages.c.prompt_tokens).label("prompt_tokens"),
            total(messages.c.completion_tokens).label("completion_tokens"),
            total(messages.c.total_tokens).label("total_tokens"),
        )
        .where(
            messages.c.owner == owner,
            messages.c.created_at >= _epoch(first),
            messages.c.created_at < _epoch(last + dt.timedelta(days=1)),
            messages.c.role == "assistant",
        )
        .group_by(day, name)
        .order_by(day, name)
    )
    if assistant is not None:
        query = query.where(messages.c.assistant == assistant)
    epoch = dt.date(1970, 1, 1)
    return [
        DayUsage(
            epoch + dt.timedelta(days=int(row.day)),
            row.assistant,
            int(row.answers),
            int(row.without_usage),
            int(row.estimated),
            int(row.prompt_tokens),
            int(row.completion_tokens),
            int(row.total_tokens),
        )
        for row in await db.execute(query)
    ]
