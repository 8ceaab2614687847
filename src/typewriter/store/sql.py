"""Conversations and messages in SQL: SQLite (aiosqlite) or PostgreSQL (asyncpg).

The store is never on the token path. A generation records its question and
opens its answer once (``start_turn``), saves the text every
``checkpoint_interval`` (half a second by default) together with every other
running answer (``checkpoint_many``) and once more when it ends (``finish``),
so a slow or unreachable database delays no token; at worst the last interval
of a process that died is lost, and such answers end up ``interrupted``: marked by
the next start-up, or, with replicas, by the replica that finds the dead one's
lease lapsed (which also stores the full text the listeners saw).

``SqlStore`` is the store the server holds, and each of its operations is one
transaction: what it owns is which reads and writes go together, and the owner
check that comes first. The rows themselves are read and written by the modules
it composes, one job each:

- ``database``: the engine and its transactions (``SqlStore`` is a ``Database``)
- ``conversations``: conversation rows, listed a page at a time (``cursor``)
- ``messages``: message rows, each read with its rating (``feedback``)
- ``history``: what the model sees of a conversation
- ``answers``: an answer's status, from ``streaming`` to ``done`` or ``interrupted``
- ``usage``: the tokens of a user's answers, per day and assistant
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from typewriter.errors import AnswerInProgress, InvalidField, NotFound, StoreUnavailable
from typewriter.images import Image
from typewriter.messages import ChatMessage
from typewriter.store import answers, schema
from typewriter.store.attachments import (
    attachments_of,
    conversation_attachments,
    copy_attachments,
    insert_attachments,
    owned_attachment,
    with_image_data,
    with_images,
)
from typewriter.store.branches import Tree
from typewriter.store.conversations import (
    conversation_page,
    insert_conversation,
    lock_conversation_of,
    owned_conversation,
    remove_conversation,
    title_for,
    touch_conversation,
)
from typewriter.store.database import Database
from typewriter.store.feedback import rate
from typewriter.store.group_commit import GroupCommitter, Report
from typewriter.store.history import conversation_tree, history_to, within_budget
from typewriter.store.messages import (
    conversation_messages,
    delete_messages,
    insert_message,
    owned_message,
    question_of,
    refuse_while_answering,
    streaming_streams,
)
from typewriter.store.migrations import migrate
from typewriter.store.new_turns import NewTurn, insert_new_turns, read_conversation
from typewriter.store.records import Conversation, Feedback, Message, Turn
from typewriter.store.search import snippets
from typewriter.store.usage import DayUsage, usage_per_day

__all__ = ["SqlStore"]

_WRITE_PROBE = -1
"""The ``schema_migrations`` version ``can_write`` adds and removes: no step has it."""
GROUP_COMMIT_WINDOW = 0.002
"""Seconds a new conversation's first turn may wait for others to share its commit
(``group_commit``): its question is durable within this and one transaction."""


class SqlStore(Database):
    """One store for both engines; ``url`` is an SQLAlchemy async URL.

    On SQLite a question that starts a conversation is recorded after its ask returned,
    with the others of the same few milliseconds (``new_turns``, ``group_commit``); every
    other operation waits for those queued before it, so this server reads its own writes.
    PostgreSQL records every question before the ask returns: replicas share it, and
    another replica must find a conversation as soon as its id is known.
    """

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.defers_new_turns = url.startswith("sqlite")
        # conversation id -> (stream id, [answer id], asked at) of a turn queued, not written
        self._claimed: dict[str, tuple[str, list[str], float]] = {}
        self._new_turns: GroupCommitter[NewTurn] = GroupCommitter(
            super().transaction, insert_new_turns, GROUP_COMMIT_WINDOW
        )
        self._endings: GroupCommitter[answers.Ending] = GroupCommitter(
            self.settled_transaction,
            answers.finish_many,
            0.0,
            what="answers' ends",
            failed="the answer's end could not be stored",
            operation="finish_many",
        )

    def report_batches(self, report: Report) -> None:
        """Time each group-committed batch as a store operation (``new_turns``,
        ``finish_many``): the transactions no caller awaits."""
        self._new_turns.report = report
        self._endings.report = report

    @asynccontextmanager
    async def settled_transaction(self) -> AsyncIterator[AsyncConnection]:
        """A transaction that begins after every new turn queued before it was written
        (or failed): what this server said it recorded, it then finds."""
        await self._new_turns.settled()
        async with self.transaction() as db:
            yield db

    @asynccontextmanager
    async def unclaimed_transaction(self, conversation_id: str) -> AsyncIterator[AsyncConnection]:
        """A ``settled_transaction`` in which no turn into ``conversation_id`` is queued: a
        deletion or a clearing that began while an ask read the conversation lets that
        ask's turn be written first, then finds its answer ``streaming`` and stops it (as
        when the ask held the conversation's lock first)."""
        while True:
            async with self.settled_transaction() as db:
                if conversation_id not in self._claimed:
                    yield db
                    return
            # claimed after this transaction waited: the next wait covers its turn

    def defer_new_turn(
        self,
        owner: str,
        *,
        assistant: str,
        model: str,
        stream_id: str,
        question: str,
        budget_chars: int,
    ) -> tuple[Turn, asyncio.Future[None]]:
        """A new conversation's first question and its answer, ids and history known now,
        written within ``GROUP_COMMIT_WINDOW`` (``defers_new_turns`` stores only); the
        future says when it is committed, or fails with ``StoreUnavailable``.

        The same rows as ``start_turn`` with no conversation, parent or images."""
        turn = NewTurn.of(owner, question, assistant, model, stream_id, time.time())
        committed = self._new_turns.submit(turn)
        history = within_budget([], ChatMessage("user", question), budget_chars)
        return Turn(turn.conversation_id, turn.question_id, turn.answer_id, history), committed

    async def defer_next_turn(
        self,
        owner: str,
        conversation_id: str,
        *,
        assistant: str,
        model: str,
        stream_id: str,
        question: str,
        budget_chars: int,
        sees_images: bool = False,
        image_budget: int = 20 << 20,
    ) -> tuple[Turn, asyncio.Future[None]]:
        """A question into ``conversation_id`` after its newest message, as ``start_turn``
        records it, but read in one statement and written within ``GROUP_COMMIT_WINDOW``
        (``defers_new_turns`` stores only).

        One answer at a time holds as with ``start_turn``: a conversation with an answer
        ``streaming`` (in the store, or queued here and not yet written) is refused with
        ``AnswerInProgress``. The check and the claim are made inside the reading
        transaction, and SQLite runs one transaction at a time on its one connection, so
        two asks into one conversation never both pass (the store of one process)."""
        now = time.time()
        try:
            turn, history = await self._read_next_turn(
                owner,
                conversation_id,
                assistant=assistant,
                model=model,
                stream_id=stream_id,
                question=question,
                budget_chars=budget_chars,
                sees_images=sees_images,
                image_budget=image_budget,
                now=now,
            )
        except BaseException:
            if self._claimed.get(conversation_id, ("",))[0] == stream_id:
                del self._claimed[conversation_id]  # claimed, then the transaction failed
            raise
        # No await since the transaction: its claim and this queueing are one step.
        committed = self._new_turns.submit(turn)
        committed.add_done_callback(lambda _: self._claimed.pop(conversation_id, None))
        return Turn(conversation_id, turn.question_id, turn.answer_id, history), committed

    async def _read_next_turn(
        self,
        owner: str,
        conversation_id: str,
        *,
        assistant: str,
        model: str,
        stream_id: str,
        question: str,
        budget_chars: int,
        sees_images: bool,
        image_budget: int,
        now: float,
    ) -> tuple[NewTurn, tuple[ChatMessage, ...]]:
        """``defer_next_turn``'s reading transaction: the checks, the history, the turn's
        rows, and the claim on the conversation."""
        async with self.settled_transaction() as db:
            await owned_conversation(db, owner, conversation_id)
            read = await read_conversation(db, conversation_id)
            claimed = self._claimed.get(conversation_id)
            if claimed is not None:
                raise AnswerInProgress(*claimed)
            after = read.tree.newest
            stored = await conversation_attachments(db, conversation_id) if sees_images else {}
            prior = []
            for message_id in read.tree.path_to(after):
                role, text = read.texts[message_id]
                if text:
                    prior.append(with_images(ChatMessage(role, text), stored.get(message_id, ())))
            history = within_budget(prior, ChatMessage("user", question), budget_chars)
            if sees_images:
                history = await with_image_data(db, history, image_budget)
            turn = NewTurn.of(
                owner,
                question,
                assistant,
                model,
                stream_id,
                now,
                conversation_id=conversation_id,
                follows=after,
                position=read.last_position + 1,
            )
            self._claimed[conversation_id] = (stream_id, [turn.answer_id], now)
        return turn, history

    async def close(self) -> None:
        """Write the new turns still queued, then let the engine go."""
        await self._new_turns.close()
        await self._endings.close()
        await super().close()

    async def start(self) -> int:
        """Bring the schema up to date; answers left ``streaming`` are the caller's to judge.

        Only the broker knows whether another replica still generates one of them
        (see ``Gateway.start``), so marking them ``interrupted`` is not done here.
        """
        return await migrate(self.engine)

    async def can_write(self) -> bool:
        """Whether a write commits now (``/readyz``): a full disk or a read-only file fails
        here, where a SELECT still succeeds.

        It adds a row to ``schema_migrations`` and deletes it in the same transaction:
        nobody else ever sees it, but the commit must reach the disk (SQLite skips an
        UPDATE that changes no value, so rewriting a row would prove nothing).
        """
        table = schema.schema_migrations
        try:
            async with self.transaction() as db:
                await db.execute(table.insert().values(version=_WRITE_PROBE, applied_at=0.0))
                await db.execute(table.delete().where(table.c.version == _WRITE_PROBE))
        except StoreUnavailable:
            return False
        return True

    async def streaming_answers(self) -> list[tuple[str, str]]:
        """``(message id, stream id)`` of every answer still marked ``streaming``."""
        async with self.settled_transaction() as db:
            return await answers.still_streaming(db)

    async def interrupt(
        self, message_ids: list[str], text: str | None = None, reasoning: str | None = None
    ) -> int:
        """Mark answers whose generation died ``interrupted``, keeping ``text`` if given (and
        the ``reasoning`` its listeners saw, if any).

        Only answers still ``streaming``: one that was finished meanwhile keeps its end.
        """
        async with self.settled_transaction() as db:
            return await answers.interrupt(db, message_ids, text, reasoning)

    # -- conversations -----------------------------------------------------------

    async def create_conversation(
        self, owner: str, title: str | None, assistant: str
    ) -> Conversation:
        async with self.settled_transaction() as db:
            return await insert_conversation(db, owner, title or "New chat", assistant)

    async def list_conversations(
        self, owner: str, limit: int, cursor: str | None
    ) -> tuple[list[Conversation], str | None]:
        """Newest first; ``cursor`` is the opaque ``next_cursor`` of the previous page."""
        async with self.settled_transaction() as db:
            return await conversation_page(db, owner, limit, cursor)

    async def search_conversations(
        self, owner: str, text: str, limit: int, cursor: str | None
    ) -> tuple[list[Conversation], str | None, dict[str, str]]:
        """Those whose title or messages hold ``text`` (``store.search``), paged as
        ``list_conversations``; with a snippet of the first message holding it, by id."""
        async with self.settled_transaction() as db:
            page, next_cursor = await conversation_page(db, owner, limit, cursor, text)
            found = await snippets(db, owner, [c.id for c in page], text)
        return page, next_cursor, found

    async def get_conversation(self, owner: str, conversation_id: str) -> Conversation:
        async with self.settled_transaction() as db:
            return await owned_conversation(db, owner, conversation_id)

    async def messages(self, owner: str, conversation_id: str) -> list[Message]:
        async with self.settled_transaction() as db:
            await owned_conversation(db, owner, conversation_id)
            return await conversation_messages(db, conversation_id)

    async def rename_conversation(
        self, owner: str, conversation_id: str, title: str
    ) -> Conversation:
        now = time.time()
        async with self.settled_transaction() as db:
            conversation = await owned_conversation(db, owner, conversation_id)
            await touch_conversation(db, conversation_id, now, title=title)
        return dataclasses.replace(conversation, title=title, updated_at=now)

    async def delete_conversation(self, owner: str, conversation_id: str) -> list[str]:
        """Delete it with its messages; the streams of its answers still being written,
        for the caller to stop (their rows are gone, so nothing would show them)."""
        async with self.unclaimed_transaction(conversation_id) as db:
            await owned_conversation(db, owner, conversation_id, lock=True)
            running = await streaming_streams(db, conversation_id)
            await remove_conversation(db, conversation_id)
        return running

    async def clear_messages(self, owner: str, conversation_id: str) -> list[str]:
        """Delete its messages; the streams still being written, as ``delete_conversation``."""
        async with self.unclaimed_transaction(conversation_id) as db:
            await owned_conversation(db, owner, conversation_id, lock=True)
            running = await streaming_streams(db, conversation_id)
            await delete_messages(db, conversation_id)
        return running

    async def get_message(self, owner: str, message_id: str) -> Message:
        async with self.settled_transaction() as db:
            return await owned_message(db, owner, message_id)

    async def set_feedback(
        self, owner: str, message_id: str, rating: int, comment: str | None
    ) -> Feedback:
        """Rate an answer; rating again replaces the earlier rating.

        The conversation is locked first (shared), so the message cannot vanish between
        the owner check and the write: a deletion committed before is ``404``.
        """
        async with self.settled_transaction() as db:
            await lock_conversation_of(db, message_id, share=True)
            await owned_message(db, owner, message_id)
            return await rate(db, owner, message_id, rating, comment)

    async def usage(
        self, owner: str, first: dt.date, last: dt.date, assistant: str | None = None
    ) -> list[DayUsage]:
        """The owner's answers from ``first`` to ``last`` (UTC days), per day and assistant."""
        async with self.settled_transaction() as db:
            return await usage_per_day(db, owner, first, last, assistant)

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
        parent: str | None = None,
        edit: str | None = None,
        images: Sequence[Image] | None = (),
        sees_images: bool = False,
        image_budget: int = 20 << 20,
    ) -> Turn:
        """Record the question (or find it, to regenerate) and open the answer.

        A new question follows ``parent`` (an answer of the conversation; default: the
        message written last, so a conversation goes on where it was left); ``edit`` asks
        a new version of that question beside it, after the same parent, with its images
        when ``images`` is None. Either way the model sees the branch down to the question.

        One answer at a time per conversation: ``AnswerInProgress`` while one is still
        ``streaming``. The conversation stays locked from that check to the commit, so
        two asks never both pass it, and positions follow one another.

        ``images`` are stored with a new question as its attachments. ``sees_images``:
        the answering model reads images, so the history's questions (this one too) carry
        theirs as ``data:`` URIs, the newest first up to ``image_budget`` bytes in all (the
        most one request may carry: older ones are left out, their text kept); otherwise
        every image is left out, the text kept.
        """
        now = time.time()
        async with self.settled_transaction() as db:
            if regenerate is not None:
                await lock_conversation_of(db, regenerate)
                asked = await question_of(db, owner, regenerate)
                await refuse_while_answering(db, asked.conversation_id)
                prior = await history_to(
                    db, asked.conversation_id, asked.parent_id, images=sees_images
                )
            else:
                assert question is not None
                conversation_id, after, copied, tree = await self._place(
                    db, owner, question, assistant, conversation_id, parent, edit
                )
                prior = await history_to(db, conversation_id, after, images=sees_images, tree=tree)
                asked = await insert_message(
                    db,
                    conversation_id,
                    owner,
                    "user",
                    question,
                    "done",
                    now,
                    finished_at=now,
                    parent_id=after,
                )
                if images is None and copied is not None:
                    await copy_attachments(db, copied, asked.id, now)
                else:
                    await insert_attachments(db, asked.id, owner, images or (), now)
            answer = await answers.open_answer(
                db, owner, asked, now, model=model, stream_id=stream_id, assistant=assistant
            )
            await touch_conversation(db, asked.conversation_id, now)
            shown = ChatMessage("user", asked.text)
            if sees_images:
                shown = with_images(shown, await attachments_of(db, asked.id))
            history = within_budget(prior, shown, budget_chars)
            if sees_images:
                history = await with_image_data(db, history, image_budget)
        return Turn(asked.conversation_id, asked.id, answer.id, history)

    @staticmethod
    async def _place(
        db: AsyncConnection,
        owner: str,
        question: str,
        assistant: str,
        conversation_id: str | None,
        parent: str | None,
        edit: str | None,
    ) -> tuple[str, str | None, str | None, Tree | None]:
        """Where a new question goes, its conversation locked and free to answer: the
        conversation, the message it follows, the question it edits (whose images it
        keeps), if any, and the conversation's tree if it was read to find the message it
        follows (``history_to`` then reads it no more)."""
        if edit is not None:
            await lock_conversation_of(db, edit)
            original = await owned_message(db, owner, edit)
            if original.role != "user":
                raise InvalidField.of(
                    [{"field": "message_id", "message": "only a question can be edited"}]
                )
            await refuse_while_answering(db, original.conversation_id)
            return original.conversation_id, original.parent_id, original.id, None
        if parent is not None:
            await lock_conversation_of(db, parent)
            follows = await owned_message(db, owner, parent)
            if conversation_id not in (None, follows.conversation_id):
                problem = "is a message of another conversation than conversation_id"
                raise InvalidField.of([{"field": "parent_id", "message": problem}])
            if follows.role != "assistant":
                problem = "must be an answer (a question follows an answer)"
                raise InvalidField.of([{"field": "parent_id", "message": problem}])
            await refuse_while_answering(db, follows.conversation_id)
            return follows.conversation_id, follows.id, None, None
        if conversation_id is None:
            created = await insert_conversation(db, owner, title_for(question), assistant)
            return created.id, None, None, None
        await owned_conversation(db, owner, conversation_id, lock=True)
        await refuse_while_answering(db, conversation_id)
        tree = await conversation_tree(db, conversation_id)
        return conversation_id, tree.newest, None, tree

    async def branch(
        self, owner: str, conversation_id: str, through: str | None = None
    ) -> list[tuple[Message, list[str]]]:
        """The messages of the branch through ``through`` (default: the newest message),
        root first, each with its siblings' ids (itself included): ``branches.Tree``."""
        async with self.settled_transaction() as db:
            await owned_conversation(db, owner, conversation_id)
            tree = await conversation_tree(db, conversation_id)
            if through is not None and through not in tree.nodes:
                raise NotFound(f"no message {through[:100]!r}", code="message_not_found")
            path = tree.branch(through)
            kept = {m.id: m for m in await conversation_messages(db, conversation_id)}
        return [(kept[i], tree.siblings(i)) for i in path if i in kept]

    async def attachment(self, owner: str, attachment_id: str) -> Image:
        """The owner's stored image (``NotFound`` for anyone else's)."""
        async with self.settled_transaction() as db:
            return await owned_attachment(db, owner, attachment_id)

    async def checkpoint(self, message_id: str, text: str) -> None:
        async with self.settled_transaction() as db:
            await answers.checkpoint(db, message_id, text)

    async def checkpoint_many(
        self,
        texts: list[tuple[str, str]],
        running: list[str] | None = None,
        reasoning: Mapping[str, str] | None = None,
    ) -> set[str]:
        """The text so far of every ``(message id, text)``, and the reasoning so far of
        those in ``reasoning``, in one transaction: a process saves all its running answers
        with one write, however many there are. Returns which of the ``running`` answers no
        longer exist (deleted while being written)."""
        async with self.settled_transaction() as db:
            await answers.checkpoint_many(db, texts, reasoning or {})
            return await answers.missing(db, running or [])

    async def finish(
        self,
        message_id: str,
        text: str,
        finish_reason: str,
        usage: dict[str, int] | None,
        first_token_ms: float | None,
        status: str = "done",
        *,
        reasoning: str | None = None,
        sources: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        """Store the answer's end, in one transaction with the ends of the answers that
        finished meanwhile (``group_commit``, no window: a batch is what queued while the
        last was written); ``StoreUnavailable`` if its batch failed."""
        ending = answers.Ending(
            message_id, text, finish_reason, usage, first_token_ms, status, reasoning, sources
        )
        await asyncio.shield(self._endings.submit(ending))
