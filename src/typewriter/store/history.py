"""What the model sees of a conversation: the branch a question was asked on, within budget.

A conversation branches where a question was edited or an answer regenerated
(``branches``); the model sees only the path from the first question down to the new
one, so it never reads two answers to one question, nor the question an edit replaced.
The newest turns that fit the budget are kept, oldest dropped first; the new question is
always kept, even over budget, as there would be nothing to answer without it.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from typewriter.messages import ChatMessage
from typewriter.store.attachments import conversation_attachments, with_images
from typewriter.store.branches import Node, Tree
from typewriter.store.schema import messages

__all__ = ["conversation_tree", "history_to", "within_budget"]


async def conversation_tree(db: AsyncConnection, conversation_id: str) -> Tree:
    """The conversation's messages as a tree (ids, roles and parents only)."""
    query = (
        sa.select(messages.c.id, messages.c.role, messages.c.parent_id, messages.c.reply_to)
        .where(messages.c.conversation_id == conversation_id)
        .order_by(messages.c.position, messages.c.created_at)
    )
    rows = (await db.execute(query)).all()
    return Tree(Node(r.id, r.role, r.parent_id or r.reply_to) for r in rows)


async def history_to(
    db: AsyncConnection,
    conversation_id: str,
    last: str | None,
    *,
    images: bool = False,
    tree: Tree | None = None,
) -> list[ChatMessage]:
    """The conversation as the model should see it: the path down to ``last`` (included;
    ``None``: nothing).

    With ``images`` (the model reads them) a question's images follow its text, as
    placeholders whose bytes are read only for the messages the budget keeps; without,
    they are left out and the text goes alone. ``tree``: the conversation's, when the
    caller has just read it (it is not read twice).
    """
    if last is None:
        return []
    if tree is None:
        tree = await conversation_tree(db, conversation_id)
    path = tree.path_to(last)
    if not path:
        return []
    # The whole conversation's rows, not ``IN (path)``: a branch may be longer than the
    # most parameters one statement takes.
    query = sa.select(messages.c.id, messages.c.role, messages.c.text).where(
        messages.c.conversation_id == conversation_id
    )
    rows = {row.id: row for row in (await db.execute(query)).all()}
    stored = await conversation_attachments(db, conversation_id) if images else {}
    history = []
    for message_id in path:
        row = rows[message_id]
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
