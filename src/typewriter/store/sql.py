"""Conversations and messages in SQL: SQLite (aiosqlite) or PostgreSQL (asyncpg).

The store is never on the token path. A generation records its question and
opens its answer once (``start_turn``), saves the text every few seconds
(``checkpoint``) and once more when it ends (``finish``), so a slow or
unreachable database delays no token; at worst the last few seconds of a
process that died are lost, and such answers end up ``interrupted``: marked by
the next start-up, or, with replicas, by the replica that finds the dead one's
lease lapsed (which also stores the full text the listeners saw).
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from typewriter.errors import InvalidField, NotFound, StoreUnavailable
from typewriter.ids import new_id
from typewriter.messages import ChatMessage
from typewriter.store.migrations import migrate
from typewriter.store.records import Conversation, Feedback, Message, Turn
from typewriter.store.schema import conversations, feedback, messages

__all__ = ["SqlStore"]

log = logging.getLogger(__name__)
TITLE_LENGTH = 80
_FEEDBACK_COLUMNS = (
    feedback.c.rating,
    feedback.c.comment,
    feedback.c.created_at.label("feedback_at"),
)


class SqlStore:
    """One store for both engines; ``url`` is an SQLAlchemy async URL."""

    def __init__(self, url: str) -> None:
        self.url = url
        if url.startswith("sqlite"):
            # One connection: SQLite has one writer at a time, and concurrent
            # transactions on several connections wait in SQLite's busy handler
            # (sleeps of up to 100 ms) instead of in a cheap asyncio queue.
            self.engine: AsyncEngine = create_async_engine(url, pool_size=1, max_overflow=0)
            sa.event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        else:
            self.engine = create_async_engine(url, pool_pre_ping=True)

    def describe(self) -> str:
        """Where the conversations are, for the start-up line (never with a password)."""
        return self.engine.url.render_as_string(hide_password=True)

    async def start(self) -> int:
        """Bring the schema up to date; answers left ``streaming`` are the caller's to judge.

        Only the broker knows whether another replica still generates one of them
        (see ``Gateway.start``), so marking them ``interrupted`` is not done here.
        """
        return await migrate(self.engine)

    async def streaming_answers(self) -> list[tuple[str, str]]:
        """``(message id, stream id)`` of every answer still marked ``streaming``."""
        async with self._db() as db:
            rows = await db.execute(
                sa.select(messages.c.id, messages.c.stream_id).where(
                    messages.c.status == "streaming"
                )
            )
            return [(row.id, row.stream_id or "") for row in rows]

    async def interrupt(self, message_ids: list[str], text: str | None = None) -> int:
        """Mark answers whose generation died ``interrupted``, keeping ``text`` if given.

        Only answers still ``streaming``: one that was finished meanwhile keeps its end.
        """
        values: dict[str, Any] = {
            "status": "interrupted",
            "finish_reason": "error",
            "finished_at": time.time(),
        }
        if text is not None:
            values["text"] = text
        async with self._db() as db:
            result = await db.execute(
                messages.update()
                .where(messages.c.id.in_(message_ids), messages.c.status == "streaming")
                .values(**values)
            )
            return int(result.rowcount)

    async def close(self) -> None:
        await self.engine.dispose()

    async def ping(self) -> bool:
        try:
            async with self._db() as db:
                await db.execute(sa.text("SELECT 1"))
        except StoreUnavailable:
            return False
        return True

    def transaction(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """One transaction, failures to reach the database as 503 (for the user store)."""
        return self._db()

    @asynccontextmanager
    async def _db(self) -> AsyncIterator[AsyncConnection]:
        """A transaction; any failure to reach the database becomes a clean 503."""
        try:
            async with self.engine.begin() as connection:
                yield connection
        except (
            sa.exc.OperationalError,
            sa.exc.InterfaceError,
            sa.exc.TimeoutError,
            OSError,
        ) as exc:
            log.warning("database unavailable: %s", type(exc).__name__)
            raise StoreUnavailable(
                "the conversation store is unavailable; try again shortly"
            ) from None
        except sa.exc.DBAPIError as exc:
            if exc.connection_invalidated:
                raise StoreUnavailable(
                    "the conversation store is unavailable; try again shortly"
                ) from None
            raise

    # -- conversations -----------------------------------------------------------

    async def create_conversation(
        self, owner: str, title: str | None, assistant: str
    ) -> Conversation:
        async with self._db() as db:
            return await _insert_conversation(db, owner, title or "New chat", assistant)

    async def list_conversations(
        self, owner: str, limit: int, cursor: str | None
    ) -> tuple[list[Conversation], str | None]:
        """Newest first; ``cursor`` is the opaque ``next_cursor`` of the previous page."""
        query = sa.select(conversations).where(conversations.c.owner == owner)
        if cursor is not None:
            updated_at, last_id = _decode_cursor(cursor)
            query = query.where(
                sa.or_(
                    conversations.c.updated_at < updated_at,
                    sa.and_(conversations.c.updated_at == updated_at, conversations.c.id < last_id),
                )
            )
        query = query.order_by(conversations.c.updated_at.desc(), conversations.c.id.desc())
        async with self._db() as db:
            rows = (await db.execute(query.limit(limit + 1))).all()
        page = [_conversation(r) for r in rows[:limit]]
        more = len(rows) > limit
        return page, (_encode_cursor(page[-1]) if more and page else None)

    async def get_conversation(self, owner: str, conversation_id: str) -> Conversation:
        async with self._db() as db:
            return await _owned_conversation(db, owner, conversation_id)

    async def messages(self, owner: str, conversation_id: str) -> list[Message]:
        async with self._db() as db:
            await _owned_conversation(db, owner, conversation_id)
            query = (
                sa.select(messages, *_FEEDBACK_COLUMNS)
                .join(feedback, feedback.c.message_id == messages.c.id, isouter=True)
                .where(messages.c.conversation_id == conversation_id)
                .order_by(messages.c.position, messages.c.created_at)
            )
            return [_message(r) for r in (await db.execute(query)).all()]

    async def rename_conversation(
        self, owner: str, conversation_id: str, title: str
    ) -> Conversation:
        async with self._db() as db:
            await _owned_conversation(db, owner, conversation_id)
            await db.execute(
                conversations.update()
                .where(conversations.c.id == conversation_id)
                .values(title=title, updated_at=time.time())
            )
            return await _owned_conversation(db, owner, conversation_id)

    async def delete_conversation(self, owner: str, conversation_id: str) -> None:
        async with self._db() as db:
            await _owned_conversation(db, owner, conversation_id)
            await _delete_messages(db, conversation_id)
            await db.execute(conversations.delete().where(conversations.c.id == conversation_id))

    async def clear_messages(self, owner: str, conversation_id: str) -> None:
        async with self._db() as db:
            await _owned_conversation(db, owner, conversation_id)
            await _delete_messages(db, conversation_id)

    async def get_message(self, owner: str, message_id: str) -> Message:
        async with self._db() as db:
            return await _owned_message(db, owner, message_id)

    async def set_feedback(
        self, owner: str, message_id: str, rating: int, comment: str | None
    ) -> Feedback:
        """Rate an answer; rating again replaces the earlier rating."""
        async with self._db() as db:
            await _owned_message(db, owner, message_id)
            now = time.time()
            await db.execute(feedback.delete().where(feedback.c.message_id == message_id))
            await db.execute(
                feedback.insert().values(
                    message_id=message_id,
                    owner=owner,
                    rating=rating,
                    comment=comment,
                    created_at=now,
                )
            )
        return Feedback(message_id, rating, comment, now)

    # -- turns: what the chat use case records -----------------------------------

    async def start_turn(
        self,
        owner: str,
        *,
        assistant: str,
        model: str,
        stream_id: str,
        budget_chars: int,
        question: str | None = None,
        conversation_id: str | None = None,
        regenerate: str | None = None,
    ) -> Turn:
        """Record the question (or find it, to regenerate) and open the answer."""
        now = time.time()
        async with self._db() as db:
            if regenerate is not None:
                asked = await _question_of(db, owner, regenerate)
                conversation_id = asked.conversation_id
                prior = await _history_rows(db, conversation_id, before=asked)
            else:
                assert question is not None
                if conversation_id is None:
                    conversation = await _insert_conversation(
                        db, owner, _title(question), assistant
                    )
                    conversation_id = conversation.id
                else:
                    await _owned_conversation(db, owner, conversation_id)
                prior = await _history_rows(db, conversation_id, before=None)
                asked = await _insert_message(
                    db, conversation_id, owner, "user", question, "done", now, finished_at=now
                )
            answer = await _insert_message(
                db,
                conversation_id,
                owner,
                "assistant",
                "",
                "streaming",
                now,
                model=model,
                reply_to=asked.id,
                stream_id=stream_id,
            )
            await db.execute(
                conversations.update()
                .where(conversations.c.id == conversation_id)
                .values(updated_at=now)
            )
        history = _within_budget(prior, ChatMessage("user", asked.text), budget_chars)
        return Turn(conversation_id, asked.id, answer.id, history)

    async def checkpoint(self, message_id: str, text: str) -> None:
        async with self._db() as db:
            await db.execute(
                messages.update()
                .where(messages.c.id == message_id, messages.c.status == "streaming")
                .values(text=text)
            )

    async def finish(
        self,
        message_id: str,
        text: str,
        finish_reason: str,
        usage: dict[str, int] | None,
        first_token_ms: float | None,
    ) -> None:
        async with self._db() as db:
            await db.execute(
                messages.update()
                .where(messages.c.id == message_id)
                .values(
                    text=text,
                    status="done",
                    finish_reason=finish_reason,
                    usage=json.dumps(usage) if usage else None,
                    first_token_ms=first_token_ms,
                    finished_at=time.time(),
                )
            )


# -- helpers ---------------------------------------------------------------------


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _title(question: str) -> str:
    first = next((line.strip() for line in question.splitlines() if line.strip()), "")
    if not first:
        return "New chat"
    return first if len(first) <= TITLE_LENGTH else first[: TITLE_LENGTH - 1] + "…"


def _encode_cursor(conversation: Conversation) -> str:
    raw = json.dumps([conversation.updated_at, conversation.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        updated_at, last_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
        return float(updated_at), str(last_id)
    except (ValueError, TypeError, UnicodeDecodeError):
        raise InvalidField(
            f"cursor {cursor[:40]!r} is not a cursor this server gave out; "
            "use next_cursor from the previous page",
            fields=[{"field": "cursor", "message": "not a valid pagination cursor"}],
        ) from None


def _conversation(row: Row[Any]) -> Conversation:
    m = row._mapping
    return Conversation(
        m["id"], m["owner"], m["title"], m["assistant"], m["created_at"], m["updated_at"]
    )


def _message(row: Row[Any]) -> Message:
    m = row._mapping
    rating = m.get("rating")
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
        feedback=(
            Feedback(m["id"], rating, m["comment"], m["feedback_at"])
            if rating is not None
            else None
        ),
    )


async def _insert_conversation(
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


async def _owned_conversation(
    db: AsyncConnection, owner: str, conversation_id: str
) -> Conversation:
    row = (
        await db.execute(
            sa.select(conversations).where(
                conversations.c.id == conversation_id, conversations.c.owner == owner
            )
        )
    ).first()
    if row is None:
        raise NotFound(f"no conversation {conversation_id[:100]!r}", code="conversation_not_found")
    return _conversation(row)


async def _owned_message(db: AsyncConnection, owner: str, message_id: str) -> Message:
    query = (
        sa.select(messages, *_FEEDBACK_COLUMNS)
        .join(feedback, feedback.c.message_id == messages.c.id, isouter=True)
        .where(messages.c.id == message_id, messages.c.owner == owner)
    )
    row = (await db.execute(query)).first()
    if row is None:
        raise NotFound(f"no message {message_id[:100]!r}", code="message_not_found")
    return _message(row)


async def _question_of(db: AsyncConnection, owner: str, message_id: str) -> Message:
    """The user message an answer replied to (or the message itself if it is a question)."""
    message = await _owned_message(db, owner, message_id)
    if message.role == "user":
        return message
    if message.reply_to is None:
        raise NotFound(f"message {message_id!r} answers no question", code="message_not_found")
    return await _owned_message(db, owner, message.reply_to)


async def _insert_message(
    db: AsyncConnection,
    conversation_id: str,
    owner: str,
    role: str,
    text: str,
    status: str,
    now: float,
    **extra: Any,
) -> Message:
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
    )


async def _delete_messages(db: AsyncConnection, conversation_id: str) -> None:
    ids = sa.select(messages.c.id).where(messages.c.conversation_id == conversation_id)
    await db.execute(feedback.delete().where(feedback.c.message_id.in_(ids)))
    await db.execute(messages.delete().where(messages.c.conversation_id == conversation_id))


async def _history_rows(
    db: AsyncConnection, conversation_id: str, before: Message | None
) -> list[ChatMessage]:
    """The conversation as the model should see it: each question with its latest answer."""
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
    history = []
    for row in rows:
        if row.role == "assistant" and latest_answer.get(row.reply_to or "") != row.id:
            continue  # an answer that was regenerated: the newer one stands
        if row.text:
            history.append(ChatMessage(row.role, row.text))
    return history


def _within_budget(
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
