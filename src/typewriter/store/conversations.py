"""Conversation rows: created, found for their owner, listed a page at a time, removed.

Every lookup takes the owner: another user's conversation is ``NotFound``, the
same as one that does not exist, so an id tells nothing about other users.

A conversation's row is also the lock of everything in it. A transaction that adds
or removes messages takes it ``FOR UPDATE`` first, and one that rates a message
takes it ``FOR KEY SHARE`` (PostgreSQL; SQLite has one writer, and its one pooled
connection runs one transaction at a time). So asks into one conversation take
their turns, a question never lands in a conversation being deleted (the ask waits,
then finds it gone: ``404``), and as every writer locks the conversation before any
message, no two of them wait on each other.
"""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from typewriter.errors import NotFound
from typewriter.ids import new_id
from typewriter.store.cursor import decode_cursor, encode_cursor
from typewriter.store.messages import delete_messages
from typewriter.store.records import Conversation
from typewriter.store.schema import conversations, messages
from typewriter.store.search import matching
from typewriter.store.titles import title_for

__all__ = [
    "conversation_page",
    "insert_conversation",
    "lock_conversation_of",
    "owned_conversation",
    "remove_conversation",
    "title_for",
    "touch_conversation",
]


async def insert_conversation(
    db: AsyncConnection, owner: str, title: str, assistant: str
) -> Conversation:
    now = time.time()
    conversation = Conversation(new_id("conv"), owner, title, assistant, now, now)
    await db.execute(
        conversations.insert().values(
            id=conversation.id,
            owner=owner,
            title=title,
            assistant=assistant,
            created_at=now,
            updated_at=now,
        )
    )
    return conversation


async def owned_conversation(
    db: AsyncConnection, owner: str, conversation_id: str, *, lock: bool = False
) -> Conversation:
    """The owner's conversation; with ``lock``, held ``FOR UPDATE`` until the commit."""
    query = sa.select(conversations).where(
        conversations.c.id == conversation_id, conversations.c.owner == owner
    )
    if lock:
        query = query.with_for_update()
    row = (await db.execute(query)).first()
    if row is None:
        raise NotFound(f"no conversation {conversation_id[:100]!r}", code="conversation_not_found")
    return _conversation(row)


async def lock_conversation_of(
    db: AsyncConnection, message_id: str, *, share: bool = False
) -> None:
    """Lock the conversation holding ``message_id`` (``FOR KEY SHARE`` with ``share``, else
    ``FOR UPDATE``); nothing to lock when it is gone, which the caller's next read finds."""
    holding = sa.select(messages.c.conversation_id).where(messages.c.id == message_id)
    query = sa.select(conversations.c.id).where(conversations.c.id.in_(holding))
    await db.execute(query.with_for_update(read=share, key_share=share))


async def conversation_page(
    db: AsyncConnection, owner: str, limit: int, cursor: str | None, search: str | None = None
) -> tuple[list[Conversation], str | None]:
    """Newest first, after ``cursor``; the cursor of the next page if there is one.

    With ``search``, only those whose title or a message's text holds it (``search``)."""
    query = sa.select(conversations).where(conversations.c.owner == owner)
    if search:
        query = query.where(matching(owner, search))
    if cursor is not None:
        updated_at, last_id = decode_cursor(cursor)
        query = query.where(
            sa.or_(
                conversations.c.updated_at < updated_at,
                sa.and_(conversations.c.updated_at == updated_at, conversations.c.id < last_id),
            )
        )
    query = query.order_by(conversations.c.updated_at.desc(), conversations.c.id.desc())
    rows = (await db.execute(query.limit(limit + 1))).all()
    page = [_conversation(row) for row in rows[:limit]]
    more = len(rows) > limit
    return page, (encode_cursor(page[-1].updated_at, page[-1].id) if more and page else None)


async def touch_conversation(
    db: AsyncConnection, conversation_id: str, now: float, *, title: str | None = None
) -> None:
    """Mark the conversation active at ``now`` (it lists first), renamed if ``title`` is given."""
    values: dict[str, Any] = {"updated_at": now}
    if title is not None:
        values["title"] = title
    await db.execute(
        conversations.update().where(conversations.c.id == conversation_id).values(**values)
    )


async def remove_conversation(db: AsyncConnection, conversation_id: str) -> None:
    """The conversation with its messages and their feedback."""
    await delete_messages(db, conversation_id)
    await db.execute(conversations.delete().where(conversations.c.id == conversation_id))


def _conversation(row: Row[Any]) -> Conversation:
    m = row._mapping
    return Conversation(
        m["id"], m["owner"], m["title"], m["assistant"], m["created_at"], m["updated_at"]
    )
