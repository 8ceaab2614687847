"""A new conversation's first turn, written without reading anything first.

A question that starts a conversation needs nothing from the database: its
conversation, its question and its answer get their ids here, its history is the
question alone, and no other request can know the conversation yet (so there is no
lock to take and no answer in progress to refuse). That is what lets such turns be
recorded after the ask returns (``group_commit``), and many of them in one
transaction: a few statements however many turns, positions 1 and 2.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection

from typewriter.ids import new_id
from typewriter.store.schema import conversations, messages
from typewriter.store.titles import title_for

__all__ = ["NewTurn", "insert_new_turns"]


@dataclass(frozen=True, slots=True)
class NewTurn:
    """The rows of a conversation's first question and its ``streaming`` answer."""

    owner: str
    question: str
    assistant: str
    model: str
    stream_id: str
    asked_at: float
    conversation_id: str
    question_id: str
    answer_id: str

    @classmethod
    def of(
        cls, owner: str, question: str, assistant: str, model: str, stream_id: str, now: float
    ) -> NewTurn:
        """A turn with fresh ids: known (and returned to the client) before any write."""
        return cls(
            owner,
            question,
            assistant,
            model,
            stream_id,
            now,
            new_id("conv"),
            new_id("msg"),
            new_id("msg"),
        )


async def insert_new_turns(db: AsyncConnection, turns: Sequence[NewTurn]) -> None:
    """Every turn's conversation, question and answer: one statement per table
    (``executemany``), the rows as ``start_turn`` would have written them."""
    if not turns:
        return
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
            for t in turns
        ],
    )
    rows = []
    for t in turns:
        shared = {"conversation_id": t.conversation_id, "owner": t.owner, "created_at": t.asked_at}
        rows.append(
            {
                **shared,
                "id": t.question_id,
                "position": 1,
                "role": "user",
                "text": t.question,
                "status": "done",
                "finished_at": t.asked_at,
                "model": None,
                "reply_to": None,
                "parent_id": None,
                "stream_id": None,
                "assistant": None,
            }
        )
        rows.append(
            {
                **shared,
                "id": t.answer_id,
                "position": 2,
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
