"""The use case: a question in, a stream of events out.

``Chat.ask`` checks the per-answer limits, opens a stream, records the
question, appends ``start`` and hands the rest to a generation task
(:mod:`.generation`) that never waits for listeners. The stream comes first so
that a broker that is away or full fails the ask with nothing recorded.

The per-answer limits live here because every entry point (``/v1/chat``,
regenerate, ``/v1/chat/completions``) goes through ``ask``: a message too long
(``MessageTooLong``; the route names the request field) and one answer too many
for its user, or with auth off its client (``TooManyRequests``), are refused
before anything is recorded or streamed. An answer that reaches
``max_answer_chars`` is cut by the generation and ends ``length``.

A question that starts a conversation, or follows a conversation's newest message,
is recorded after the ask returns, on SQLite (``store.group_commit``): its ids are
made first, and its answer's ``end`` waits for the commit (``pending``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from asyncio import FIRST_COMPLETED
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from typewriter import events
from typewriter.assistants import Assistant
from typewriter.config import Settings
from typewriter.errors import (
    AnswerInProgress,
    Draining,
    MessageTooLong,
    TypewriterError,
)
from typewriter.ids import new_id
from typewriter.images import Image
from typewriter.messages import ChatMessage
from typewriter.models.base import GenerationOptions, ModelRequest
from typewriter.observe.metrics import Metrics
from typewriter.recorder import Checkpointer, Recorder
from typewriter.slots import Slot, Slots, StreamSlots
from typewriter.store.records import Turn
from typewriter.store.sql import SqlStore
from typewriter.streams.base import Replicas

from .generation import Answer, Generation, GenerationBroker
from .orphans import end_orphans
from .pending import PendingRecorder

__all__ = ["Answer", "Chat", "Question"]

_Started = TypeVar("_Started")

_STREAM_CREATED_WITHIN = 30.0
"""Seconds after its answer is recorded by which its stream runs (an ask creates the stream
just before it records the answer; the margin covers a slow store and broker), so an older
answer with no stream running has ended."""


@dataclass(frozen=True, slots=True)
class Question:
    """What to answer: the conversation so far, ending with the user's new message."""

    owner: str
    messages: tuple[ChatMessage, ...]
    assistant: str  # a served assistant's name: the routes resolve the default
    conversation_id: str | None = None
    options: GenerationOptions = GenerationOptions()
    persist: bool = False  # record in the store, and take the history from it
    regenerate: str | None = None  # answer this message's question again
    parent: str | None = None  # ask after this answer (default: the newest message)
    edit: str | None = None  # a new version of this question, beside it
    # Stored with a persisted question (its last message's); None: an edit keeps the images
    # of the question it edits.
    images: tuple[Image, ...] | None = ()
    # Whom max_streams_per_user counts this answer against (``api.limit_key``: the
    # user, or with auth off the client's address); None: nobody. Every caller says.
    limit_key: str | None = field(kw_only=True)


class ChatBroker(GenerationBroker, Replicas, Protocol):
    """What the use case needs of the broker: a generation's needs, and dead replicas' answers.

    Not the user channel or the broker's lifecycle: those belong to the routes and the
    composition root.
    """


class Chat:
    """Runs generations; one task per answer, tracked so shutdown can end them cleanly."""

    def __init__(
        self,
        settings: Settings,
        broker: ChatBroker,
        assistants: Mapping[str, Assistant],
        store: SqlStore | None = None,
        metrics: Metrics | None = None,
        slots: StreamSlots | None = None,
    ) -> None:
        self.settings = settings
        self.broker = broker
        self.assistants = assistants
        self.store = store
        # One per process: every running answer's checkpoint in one write per interval.
        self.checkpointer = (
            Checkpointer(store, settings.checkpoint_interval) if store is not None else None
        )
        self.generation = Generation(settings, broker, metrics)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._slots = slots or Slots(settings.max_streams_per_user)
        self.draining = False
        self._drain_cut = asyncio.Event()

    @property
    def running(self) -> int:
        return len(self._tasks)

    def generating(self, key: str) -> int:
        """How many answers counted under ``key`` hold a slot (are generating) in this
        process."""
        return self._slots.held(key)

    async def ask(self, question: Question) -> Answer:
        """Check the limits, record the question (if persisted), open the stream, start
        generating.

        Draining and both limits are checked first, so a refused question leaves nothing
        behind: no stored message, no stream, no slot.
        """
        if self.draining:
            raise Draining()
        asked_at = asyncio.get_running_loop().time()
        assistant = self.assistants[question.assistant]
        _check_lengths(question, self.settings.max_message_chars)
        self.broker.admit(question.owner)  # its memory budget: 429 or 503
        stream_id = new_id("st")  # the slot's name, where slots are shared (Redis)
        slot = await self._slots.take(question.owner, question.limit_key, stream_id)
        try:
            return await self._start(question, assistant, slot, stream_id, asked_at)
        except BaseException:
            slot.release()  # recorded or not, nothing is generating for it
            raise

    async def _start(
        self, question: Question, assistant: Assistant, slot: Slot, stream_id: str, asked_at: float
    ) -> Answer:
        """Open the stream, then record the question: a broker that is away or full fails
        the ask (503) before anything is stored, and a store that refuses the question
        (busy conversation, store away) takes the empty stream back."""
        await self.broker.create(question.owner, stream_id)
        recorder: Recorder | None = None
        try:
            answer, recorder, messages = await self._open_answer(question, assistant, stream_id)
            start = events.Start(
                stream_id,
                answer.conversation_id,
                answer.message_id,
                assistant.name,
                int(time.time()),
            )
            await self.broker.append(stream_id, start.name, events.encode(start))
        except BaseException:
            if recorder is not None:  # recorded but never streamed: not left "streaming"
                with contextlib.suppress(TypewriterError):
                    await recorder.store.interrupt([recorder.message_id], "")
            with contextlib.suppress(TypewriterError):
                await self.broker.discard(stream_id)
            raise
        request = ModelRequest(
            model=assistant.model,
            messages=_messages(assistant, messages),
            options=_merge(assistant.defaults, question.options),
        )
        task = asyncio.create_task(
            self.generation.run(answer, assistant, request, recorder, asked_at, slot)
        )
        self._tasks[stream_id] = task

        def ended(_: asyncio.Task[None]) -> None:
            # Also reached by a task cancelled before it ever ran (shutdown right
            # after ask), whose own ``finally`` never runs: the slot is freed either way.
            self._tasks.pop(stream_id, None)
            slot.release()

        task.add_done_callback(ended)
        return answer

    async def _open_answer(
        self, question: Question, assistant: Assistant, stream_id: str
    ) -> tuple[Answer, Recorder | None, tuple[ChatMessage, ...]]:
        """The answer's ids, its recorder and the history to send the model: recorded in
        the store if the question is persisted, made up here if not."""
        if self.store is None or not question.persist:
            conversation_id = question.conversation_id or new_id("conv")
            return Answer(stream_id, conversation_id, new_id("msg")), None, question.messages
        assert self.checkpointer is not None  # made with the store
        recorder: Recorder
        if self.store.defers_new_turns and _deferrable(question):
            turn, committed = await self._defer(self.store, question, assistant, stream_id)
            recorder = PendingRecorder(self.checkpointer, turn.answer_id, committed)
        else:
            turn = await self._record(self.store, question, assistant, stream_id)
            recorder = Recorder(self.checkpointer, turn.answer_id)
        answer = Answer(stream_id, turn.conversation_id, turn.answer_id, turn.question_id)
        return answer, recorder, turn.history

    async def _record(
        self, store: SqlStore, question: Question, assistant: Assistant, stream_id: str
    ) -> Turn:
        """Record the question and open its answer; refused while the conversation's last
        answer is being written, unless that answer's stream has ended.

        Such an answer stays ``streaming`` when its end could not be stored (the database
        was away just then): it is marked ``interrupted`` here, as a restart would, rather
        than keeping its conversation refusing every question until one.
        """

        async def start_turn() -> Turn:
            return await store.start_turn(
                question.owner,
                assistant=assistant.name,
                model=assistant.model,
                stream_id=stream_id,
                budget_chars=self.settings.history_budget_chars,
                question=None if question.regenerate else question.messages[-1].content,
                conversation_id=question.conversation_id,
                regenerate=question.regenerate,
                parent=question.parent,
                edit=question.edit,
                images=question.images,
                sees_images=assistant.accepts_images,
                image_budget=self.settings.max_image_bytes,
            )

        return await self._past_ended_answer(store, start_turn)

    async def _defer(
        self, store: SqlStore, question: Question, assistant: Assistant, stream_id: str
    ) -> tuple[Turn, asyncio.Future[None]]:
        """As ``_record``, the rows written after the ask returns (``store.group_commit``):
        a new conversation's first question reads nothing, a question into one reads it
        once (refused while an answer of it is being written, as ``_record`` is)."""
        text = question.messages[-1].content
        budget = self.settings.history_budget_chars
        if question.conversation_id is None:
            return store.defer_new_turn(
                question.owner,
                assistant=assistant.name,
                model=assistant.model,
                stream_id=stream_id,
                question=text,
                budget_chars=budget,
            )

        async def defer_next_turn() -> tuple[Turn, asyncio.Future[None]]:
            assert question.conversation_id is not None
            return await store.defer_next_turn(
                question.owner,
                question.conversation_id,
                assistant=assistant.name,
                model=assistant.model,
                stream_id=stream_id,
                question=text,
                budget_chars=budget,
                sees_images=assistant.accepts_images,
                image_budget=self.settings.max_image_bytes,
            )

        return await self._past_ended_answer(store, defer_next_turn)

    async def _past_ended_answer(
        self, store: SqlStore, start: Callable[[], Awaitable[_Started]]
    ) -> _Started:
        """``start()``, once more after marking ``interrupted`` the answer that refused it
        when that answer is only a row whose stream has ended (see ``_record``)."""
        try:
            return await start()
        except AnswerInProgress as busy:
            if not await self._ended(busy):
                raise
            await store.interrupt(busy.message_ids)
            return await start()

    async def _ended(self, busy: AnswerInProgress) -> bool:
        """Whether the answer in the way is only a row: old enough to have its stream (an
        ask creates the stream just before it records the answer) and no stream running."""
        if time.time() - busy.started_at < _STREAM_CREATED_WITHIN:
            return False
        return not await self.broker.live([busy.stream_id])

    async def drain(self, timeout: float) -> None:
        """Refuse new questions, let running answers go on for up to ``timeout`` seconds
        (or until :meth:`cut_drain`), then end those still running ``interrupted``.

        Returns as soon as the last answer ended, so a stop waits only as long as the
        answers need. An ask that passed its check just before is started and waited
        for like the others: the loop looks again until nothing runs.
        """
        self.draining = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        cut = asyncio.create_task(self._drain_cut.wait())
        try:
            while (running := self._running()) and not cut.done():
                left = deadline - loop.time()
                if left <= 0:
                    break
                await asyncio.wait((*running, cut), timeout=left, return_when=FIRST_COMPLETED)
        finally:
            cut.cancel()
        await self.shutdown()

    def cut_drain(self) -> None:
        """End the drain now: the answers still running end ``interrupted`` at once."""
        self._drain_cut.set()

    async def shutdown(self) -> None:
        """End every running answer (``error`` then ``end``) before the process goes."""
        while tasks := self._running():
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _running(self) -> list[asyncio.Task[None]]:
        return [task for task in self._tasks.values() if not task.done()]

    async def end_orphans(self) -> int:
        """End the streams of replicas that died (see :mod:`.orphans`); how many were ended."""
        return await end_orphans(self.broker, self.store, self.generation)


def _deferrable(question: Question) -> bool:
    """A question after a conversation's newest message (or starting one), without images:
    its rows are inserts, written after the ask returns (``store.group_commit``). Edits,
    regenerations, a chosen parent and images take ``start_turn``."""
    return (
        question.regenerate is None
        and question.parent is None
        and question.edit is None
        and not question.images
    )


def _check_lengths(question: Question, limit: int) -> None:
    """Refuse a message longer than ``limit`` characters (code points), naming its position;
    a message's tool-call arguments count with its text (``ChatMessage.read_text``)."""
    lengths = {i: n for i, m in enumerate(question.messages) if (n := len(m.read_text)) > limit}
    if lengths:
        raise MessageTooLong(lengths, limit)


def _messages(assistant: Assistant, messages: tuple[ChatMessage, ...]) -> tuple[ChatMessage, ...]:
    system = (ChatMessage("system", assistant.system_prompt),) if assistant.system_prompt else ()
    return (*system, *messages)


def _merge(defaults: GenerationOptions, given: GenerationOptions) -> GenerationOptions:
    """The request's options over the assistant's defaults; the fields the assistant
    has no default for (``params``, ``vendor``) are the request's."""
    given_limit = given.max_tokens is not None
    return GenerationOptions(
        temperature=given.temperature if given.temperature is not None else defaults.temperature,
        top_p=given.top_p if given.top_p is not None else defaults.top_p,
        max_tokens=given.max_tokens if given_limit else defaults.max_tokens,
        simulate=given.simulate,
        max_tokens_name=given.max_tokens_name if given_limit else defaults.max_tokens_name,
        params=given.params,
        vendor=given.vendor,
    )
