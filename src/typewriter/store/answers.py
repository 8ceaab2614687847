"""An answer's row through its life: opened ``streaming``, saved as it grows, then ended.

Every rule of that life is here. A checkpoint and an interruption touch only
an answer still ``streaming``, so a late checkpoint or a replica's recovery
never overwrites an end that was written; ``finish`` always writes, as the
generation's own end is the truth. An answer that no one finishes (its process
died, or the database was down at the end) stays ``streaming`` until it is
found by :func:`still_streaming` and marked ``interrupted``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from typewriter.store.messages import insert_message
from typewriter.store.records import Message
from typewriter.store.schema import messages
from typewriter.store.usage import usage_columns

__all__ = [
    "Ending",
    "checkpoint",
    "checkpoint_many",
    "finish",
    "finish_many",
    "interrupt",
    "missing",
    "open_answer",
    "still_streaming",
]


async def open_answer(
    db: AsyncConnection,
    owner: str,
    question: Message,
    now: float,
    *,
    model: str,
    stream_id: str,
    assistant: str | None = None,
) -> Message:
    """An empty ``streaming`` answer to ``question``, to be written by stream ``stream_id``
    for ``assistant`` (kept so usage is summed per assistant)."""
    return await insert_message(
        db,
        question.conversation_id,
        owner,
        "assistant",
        "",
        "streaming",
        now,
        model=model,
        reply_to=question.id,
        parent_id=question.id,
        stream_id=stream_id,
        assistant=assistant,
    )


async def checkpoint(db: AsyncConnection, message_id: str, text: str) -> None:
    await checkpoint_many(db, [(message_id, text)], {})


_CHECKPOINT = (
    messages.update()
    .where(messages.c.id == sa.bindparam("saved_id"), messages.c.status == "streaming")
    .values(text=sa.bindparam("saved_text"), reasoning=sa.bindparam("saved_reasoning"))
)


async def checkpoint_many(
    db: AsyncConnection, texts: list[tuple[str, str]], reasoning: Mapping[str, str]
) -> None:
    """The text (and reasoning, if any) so far of many answers, as one statement run for
    each (``executemany``: one round trip on PostgreSQL, one prepared statement on SQLite).

    Every row is given both values, as one statement serves them all: an answer with no
    reasoning keeps NULL, and one whose reasoning is in ``reasoning`` gets all of it."""
    if texts:
        rows = [
            {"saved_id": i, "saved_text": text, "saved_reasoning": reasoning.get(i) or None}
            for i, text in texts
        ]
        await db.execute(_CHECKPOINT, rows)


async def missing(db: AsyncConnection, message_ids: list[str]) -> set[str]:
    """Which of ``message_ids`` no longer exist: answers whose conversation was deleted or
    cleared while they were being written."""
    if not message_ids:
        return set()
    rows = await db.execute(sa.select(messages.c.id).where(messages.c.id.in_(message_ids)))
    return set(message_ids) - {row.id for row in rows}


@dataclass(frozen=True, slots=True)
class Ending:
    """An answer's end as ``finish`` stores it."""

    message_id: str
    text: str
    finish_reason: str
    usage: dict[str, int] | None
    first_token_ms: float | None
    status: str = "done"
    reasoning: str | None = None
    sources: Sequence[Mapping[str, Any]] = ()
    """Which upstream wrote which characters of ``text``: ``{"upstream", "model", "start",
    "end", "failure", "gap_ms"}`` each, in order. The first part's model becomes the
    answer's ``model`` (the one that began writing it, a fallback's if the first link
    refused); none (a model in the process) leaves both as they were."""


_FINISH = (
    messages.update()
    .where(messages.c.id == sa.bindparam("ended_id"))
    .values(
        {
            column: sa.bindparam(f"ended_{column}")
            for column in (
                "text",
                "reasoning",
                "status",
                "finish_reason",
                "usage",
                "prompt_tokens",
                "completion_tokens",
                "total_tokens",
                "usage_estimated",
                "first_token_ms",
                "finished_at",
                "sources",
            )
        }
        | {"model": sa.func.coalesce(sa.bindparam("ended_model"), messages.c.model)}
    )
)


async def finish(
    db: AsyncConnection,
    message_id: str,
    text: str,
    finish_reason: str,
    usage: dict[str, int] | None,
    first_token_ms: float | None,
    status: str = "done",
    reasoning: str | None = None,
) -> None:
    """Store the answer's end; ``status`` is ``interrupted`` when the server cut it short.

    ``reasoning`` is the model's reasoning, kept apart from the text (NULL when none)."""
    ending = Ending(message_id, text, finish_reason, usage, first_token_ms, status, reasoning)
    await finish_many(db, [ending])


async def finish_many(db: AsyncConnection, endings: Sequence[Ending]) -> None:
    """Many answers' ends as one statement run for each (``executemany``): the ends of
    answers that finished together share a transaction (``group_commit``)."""
    if not endings:
        return
    now = time.time()
    rows = [
        {
            "ended_id": e.message_id,
            "ended_text": e.text,
            "ended_reasoning": e.reasoning or None,
            "ended_status": e.status,
            "ended_finish_reason": e.finish_reason,
            "ended_usage": json.dumps(e.usage) if e.usage else None,
            **{f"ended_{k}": v for k, v in usage_columns(e.usage).items()},
            "ended_first_token_ms": e.first_token_ms,
            "ended_finished_at": now,
            "ended_sources": json.dumps(list(e.sources)) if e.sources else None,
            "ended_model": e.sources[0]["model"] if e.sources else None,
        }
        for e in endings
    ]
    await db.execute(_FINISH, rows)


async def still_streaming(db: AsyncConnection) -> list[tuple[str, str]]:
    """``(message id, stream id)`` of every answer still marked ``streaming``."""
    rows = await db.execute(
        sa.select(messages.c.id, messages.c.stream_id).where(messages.c.status == "streaming")
    )
    return [(row.id, row.stream_id or "") for row in rows]


async def interrupt(
    db: AsyncConnection, message_ids: list[str], text: str | None, reasoning: str | None = None
) -> int:
    """Mark those still ``streaming`` ``interrupted``, keeping ``text`` if given (and
    ``reasoning``, if any: else the last checkpoint's stays); how many."""
    values: dict[str, Any] = {
        "status": "interrupted",
        "finish_reason": "error",
        "finished_at": time.time(),
    }
    if text is not None:
        values["text"] = text
    if reasoning:
        values["reasoning"] = reasoning
    result = await db.execute(
        messages.update()
        .where(messages.c.id.in_(message_ids), messages.c.status == "streaming")
        .values(**values)
    )
    return int(result.rowcount)
