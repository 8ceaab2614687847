"""What the model sees of a conversation: each question with its newest answer, within budget.

An answer that was regenerated stays in the conversation for the user to read,
but only the newest answer to a question is history, so the model never sees
two answers to one question. The newest turns that fit the budget are kept,
oldest dropped first; the new question is always kept, even over budget, as
there would be nothing to answer without it.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from typewriter.messages import ChatMessage
from typewriter.store.attachments import conversation_attachments, with_images
from typewriter.store.records import Message
from typewriter.store.schema import messages

__all__ = ["history_before", "within_budget"]


async def history_before(
    db: AsyncConnection, conversation_id: str, before: Message | None, *, images: bool = False
) -> list[ChatMessage]:
    """The conversation as the model should see it, up to ``before`` (or all of it).

    With ``images`` (the model reads them) a question's images follow its text, as
    placeholders whose bytes are read only for the messages the budget keeps; without,
    they are left out and the text goes alone.
    """
    query = (
        sa.select(
            messages.c.id,
            messages.c.role,
            messages.c.text,
            messages.c.reply_to,
            messages.c.position,
        )
        .where(messages.c.conversation_id == conversation_id)
        .order_by(messages.c.position, messages.c.created_at)
    )
    rows = (await db.execute(query)).all()
    if before is not None:
        cut = next((i for i, r in enumerate(rows) if r.id == before.id), len(rows))
        rows = rows[:cut]
    latest_answer: dict[str, str] = {}
    for row in rows:
        if row.role == "assistant" and row.reply_to:
            latest_answer[row.reply_to] = row.id
    stored = await conversation_attachments(db, conversation_id) if images else {}
    history = []
    for row in rows:
        if row.role == "assistant" and latest_answer.get(row.reply_to or "") != row.id:
            continue  # an answer that was regenerated: the newer one stands
        if row.text:
            history.append(with_images(ChatMessage(row.role, row.text), stored.get(row.id, ())))
    return history


def within_budget(
    prior: Sequence[ChatMessage], question: ChatMessage, budget_chars: int
) -> tuple[ChatMessage, ...]:
    """The newest turns that fit ``budget_chars``; the new question is always kept."""
    kept: list[ChatMessage] = []
    used = len(question.content)
    for message in reversed(prior):
        used += len(message.content)
        if used > budget_chars:
            break
        kept.append(message)
    kept.reverse()
    return (*kept, question)
