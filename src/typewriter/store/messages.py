"""Message rows: the questions and answers of a conversation, in order.

A conversation's messages are numbered by ``position`` as they are added, and
always read with their feedback. Positions are unique in a conversation (an
index says so); the next one is the last plus one, which is safe because every
transaction adding messages holds the conversation's lock (see
:mod:`.conversations`). Reading one message takes its owner: another
user's message is ``NotFound``, the same as one that does not exist.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from typewriter.errors import AnswerInProgress, NotFound
from typewriter.ids import new_id
from typewriter.store.attachments import conversation_attachments
from typewriter.store.feedback import delete_feedback, feedback_of, with_feedback
from typewriter.store.records import Message
from typewriter.store.schema import messages

__all__ = [
    "conversation_messages",
    "delete_messages",
    "insert_message",
    "owned_message",
    "question_of",
    "refuse_while_answering",
    "streaming_streams",
]


async def insert_message(
    db: AsyncConnection,
    conversation_id: str,
    owner: str,
    role: str,
    text: str,
    status: str,
    now: float,
    **extra: Any,
) -> Message:
    """A new message after the conversation's last; ``extra`` sets other columns."""
    position = (
        await db.execute(
            sa.select(sa.func.coalesce(sa.func.max(messages.c.position), 0)).where(
                messages.c.conversation_id == conversation_id
            )
        )
    ).scalar_one() + 1
    message_id = new_id("msg")
    values = {
        "id": message_id,
        "conversation_id": conversation_id,
        "owner": owner,
        "position": position,
        "role": role,
        "text": text,
        "status": status,
        "created_at": now,
        **extra,
    }
    await db.execute(messages.insert().values(**values))
    return Message(
        message_id,
        conversation_id,
        role,
        text,
        status,
        None,
        extra.get("model"),
        None,
        extra.get("reply_to"),
        extra.get("stream_id"),
        now,
        extra.get("finished_at"),
        None,
        parent_id=extra.get("parent_id"),
    )


async def owned_message(db: AsyncConnection, owner: str, message_id: str) -> Message:
    query = with_feedback().where(messages.c.id == message_id, messages.c.owner == owner)
    row = (await db.execute(query)).first()
    if row is None:
        raise NotFound(f"no message {message_id[:100]!r}", code="message_not_found")
    return _message(row)


async def question_of(db: AsyncConnection, owner: str, message_id: str) -> Message:
    """The user message an answer replied to (or the message itself if it is a question)."""
    message = await owned_message(db, owner, message_id)
    if message.role == "user":
        return message
    if message.reply_to is None:
        raise NotFound(f"message {message_id!r} answers no question", code="message_not_found")
    return await owned_message(db, owner, message.reply_to)


async def refuse_while_answering(db: AsyncConnection, conversation_id: str) -> None:
    """``AnswerInProgress`` if an answer of the conversation is still ``streaming``."""
    query = (
        sa.select(messages.c.id, messages.c.stream_id, messages.c.created_at)
        .where(messages.c.conversation_id == conversation_id, messages.c.status == "streaming")
        .order_by(messages.c.created_at.desc())
    )
    rows = (await db.execute(query)).all()
    if rows:
        raise AnswerInProgress(
            rows[0].stream_id or "", [row.id for row in rows], max(r.created_at for r in rows)
        )


async def streaming_streams(db: AsyncConnection, conversation_id: str) -> list[str]:
    """The streams of the conversation's answers still ``streaming``: to stop them."""
    query = sa.select(messages.c.stream_id).where(
        messages.c.conversation_id == conversation_id,
        messages.c.status == "streaming",
        messages.c.stream_id.is_not(None),
    )
    return [row.stream_id for row in (await db.execute(query)).all()]


async def conversation_messages(db: AsyncConnection, conversation_id: str) -> list[Message]:
    """The messages in order, each with its rating and its attachments' metadata."""
    query = (
        with_feedback()
        .where(messages.c.conversation_id == conversation_id)
        .order_by(messages.c.position, messages.c.created_at)
    )
    rows = (await db.execute(query)).all()
    stored = await conversation_attachments(db, conversation_id)
    return [dataclasses.replace(m, attachments=stored.get(m.id, ())) for m in map(_message, rows)]


async def delete_messages(db: AsyncConnection, conversation_id: str) -> None:
    """Every message of the conversation, and the feedback on them."""
    ids = sa.select(messages.c.id).where(messages.c.conversation_id == conversation_id)
    await delete_feedback(db, ids)
    await db.execute(messages.delete().where(messages.c.conversation_id == conversation_id))


def _message(row: Row[Any]) -> Message:
    m = row._mapping
    return Message(
        id=m["id"],
        conversation_id=m["conversation_id"],
        role=m["role"],
        text=m["text"],
        status=m["status"],
        finish_reason=m["finish_reason"],
        model=m["model"],
        usage=m["usage"],
        reply_to=m["reply_to"],
        stream_id=m["stream_id"],
        created_at=m["created_at"],
        finished_at=m["finished_at"],
        first_token_ms=m["first_token_ms"],
        feedback=feedback_of(m),
        reasoning=m["reasoning"],
        assistant=m["assistant"],
        parent_id=m["parent_id"],
        sources=m["sources"],
    )
