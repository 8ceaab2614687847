"""Turns whose rows are written after their ask returned (``group_commit``), and the reads
that let an ask into a conversation do without writing first.

A question that starts a conversation needs nothing from the database: its
conversation, question and answer get their ids here, its history is the question
alone, and no other request can know the conversation yet. A question into an existing
conversation reads it once (``read_conversation``: its owner, its messages) for the
checks and the history ``start_turn`` would make, and its rows follow the newest
message. Either way the writes are inserts (and the conversation's ``updated_at``), so
many turns go in one transaction: a few statements however many turns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from typewriter.errors import AnswerInProgress
from typewriter.ids import new_id
from typewriter.store.branches import Node, Tree
from typewriter.store.schema import conversations, messages
from typewriter.store.titles import title_for

__all__ = ["Conversation", "NewTurn", "insert_new_turns", "read_conversation"]


@dataclass(frozen=True, slots=True)
class NewTurn:
    """The rows of a question and its ``streaming`` answer; ``follows`` is the message the
    question follows (None: it starts its conversation, which is inserted with it)."""

    owner: str
    question: str
    assistant: str
    model: str
    stream_id: str
    asked_at: float
    conversation_id: str
    question_id: str
    answer_id: str
    follows: str | None = None
    position: int = 1  # the question's; the answer's is the next
    starts_conversation: bool = True  # the conversation is inserted with it

    @classmethod
    def of(
        cls,
        owner: str,
        question: str,
        assistant: str,
        model: str,
        stream_id: str,
        now: float,
        *,
        conversation_id: str | None = None,
        follows: str | None = None,
        position: int = 1,
    ) -> NewTurn:
        """A turn with fresh ids: known (and returned to the client) before any write."""
        return cls(
            owner,
            question,
            assistant,
            model,
            stream_id,
            now,
            conversation_id or new_id("conv"),
            new_id("msg"),
            new_id("msg"),
            follows,
            position,
            conversation_id is None,
        )


@dataclass(frozen=True, slots=True)
class Conversation:
    """What an ask into a conversation reads of it, in one statement."""

    tree: Tree
    texts: dict[str, tuple[str, str]]  # message id -> (role, text)
    last_position: int


async def read_conversation(db: AsyncConnection, conversation_id: str) -> Conversation:
    """The conversation's messages, once: ``AnswerInProgress`` (as
    ``refuse_while_answering``) if one of its answers is still ``streaming``."""
    query = (
        sa.select(
            messages.c.id,
            messages.c.role,
            messages.c.parent_id,
            messages.c.reply_to,
            messages.c.text,
            messages.c.status,
            messages.c.stream_id,
            messages.c.created_at,
            messages.c.position,
        )
        .where(messages.c.conversation_id == conversation_id)
        .order_by(messages.c.position, messages.c.created_at)
    )
    rows = (await db.execute(query)).all()
    busy = sorted((r for r in rows if r.status == "streaming"), key=lambda r: -r.created_at)
    if busy:
        raise AnswerInProgress(
            busy[0].stream_id or "", [r.id for r in busy], max(r.created_at for r in busy)
        )
    return Conversation(
        Tree(Node(r.id, r.role, r.parent_id or r.reply_to) for r in rows),
        {r.id: (r.role, r.text) for r in rows},
        max((r.position for r in rows), default=0),
    )


async def insert_new_turns(db: AsyncConnection, turns: Sequence[NewTurn]) -> None:
    """Every turn's question and answer (and its conversation, new or touched): one
    statement per kind (``executemany``), the rows as ``start_turn`` would write them."""
    if not turns:
        return
    started = [t for t in turns if t.starts_conversation]
    if started:
        await db.execute(
            conversations.insert(),
            [
                {
                    "id": t.conversation_id,
                    "owner": t.owner,
                    "title": title_for(t.question),
                    "assistant": t.assistant,
                    "created_at": t.asked_at,
                    "updated_at": t.asked_at,
                }
                for t in started
            ],
        )
    went_on = [t for t in turns if not t.starts_conversation]
    if went_on:
        await db.execute(
            conversations.update()
            .where(conversations.c.id == sa.bindparam("touched_id"))
            .values(updated_at=sa.bindparam("touched_at")),
            [{"touched_id": t.conversation_id, "touched_at": t.asked_at} for t in went_on],
        )
    rows = []
    for t in turns:
        shared = {"conversation_id": t.conversation_id, "owner": t.owner, "created_at": t.asked_at}
        rows.append(
            {
                **shared,
                "id": t.question_id,
                "position": t.position,
                "role": "user",
                "text": t.question,
                "status": "done",
                "finished_at": t.asked_at,
                "model": None,
                "reply_to": None,
                "parent_id": t.follows,
                "stream_id": None,
                "assistant": None,
            }
        )
        rows.append(
            {
                **shared,
                "id": t.answer_id,
                "position": t.position + 1,
                "role": "assistant",
                "text": "",
                "status": "streaming",
                "finished_at": None,
                "model": t.model,
                "reply_to": t.question_id,
                "parent_id": t.question_id,
                "stream_id": t.stream_id,
                "assistant": t.assistant,
            }
        )
    await db.execute(messages.insert(), rows)
