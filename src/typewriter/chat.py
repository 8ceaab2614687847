"""The use case: a question in, a stream of events out, and every way it can end.

``Chat.ask`` opens a stream, appends ``start`` and hands generation to a task
that never waits for listeners. The task races the model against the two
reasons to stop early (a cancel asked from anywhere, or nobody listening for
the grace period) and, on every exit path, closes the model's iterator and
appends ``end`` with the reason. Closing the iterator is what stops the model
upstream; ``end`` is what lets every listener stop reading.

The per-answer limits live here too, because every entry point (``/v1/chat``,
regenerate, ``/v1/chat/completions``) goes through ``ask``: a message too long
(``MessageTooLong``; the route names the request field) and one answer too many
for its user (``TooManyRequests``) are refused before anything is recorded or
streamed, and an answer that reaches ``max_answer_chars`` is cut there and ends
``length``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from typewriter import events
from typewriter.assistants import Assistant
from typewriter.config import Settings
from typewriter.errors import (
    BrokerUnavailable,
    MessageTooLong,
    ModelError,
    ModelTimeout,
    StreamTakenOver,
    TooManyRequests,
    TypewriterError,
)
from typewriter.events import Usage
from typewriter.ids import new_id
from typewriter.messages import ChatMessage
from typewriter.models.base import Chunk, GenerationOptions, ModelRequest
from typewriter.recorder import Recorder
from typewriter.store.sql import SqlStore
from typewriter.streams.base import Broker, Orphan

__all__ = ["Answer", "Chat", "Question"]

log = logging.getLogger(__name__)

# Seconds a client refused for too many answers at once is told to wait. When one of
# its answers ends cannot be known; a short wait lets a page retry soon after the
# user stops one, without turning the retries into a busy loop.
STREAMS_RETRY_AFTER = 2.0


@dataclass(frozen=True, slots=True)
class Question:
    """What to answer: the conversation so far, ending with the user's new message."""

    owner: str
    messages: tuple[ChatMessage, ...]
    assistant: str = "default"
    conversation_id: str | None = None
    options: GenerationOptions = GenerationOptions()
    persist: bool = False  # record in the store, and take the history from it
    regenerate: str | None = None  # answer this message's question again


@dataclass(frozen=True, slots=True)
class Answer:
    stream_id: str
    conversation_id: str
    message_id: str


@dataclass(slots=True)
class _Progress:
    """What the model produced so far: shared by the pump, the recorder and the end."""

    parts: list[str]
    first_at: float | None = None


@dataclass(slots=True)
class _Outcome:
    finish_reason: str
    usage: Usage | None = None
    error: TypewriterError | None = None


class Chat:
    """Runs generations; one task per answer, tracked so shutdown can end them cleanly."""

    def __init__(
        self,
        settings: Settings,
        broker: Broker,
        assistants: Mapping[str, Assistant],
        store: SqlStore | None = None,
    ) -> None:
        self.settings = settings
        self.broker = broker
        self.assistants = assistants
        self.store = store
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._slots = _Slots(settings.max_streams_per_user)

    @property
    def running(self) -> int:
        return len(self._tasks)

    def generating(self, owner: str) -> int:
        """How many answers of ``owner`` hold a slot (are generating) in this process."""
        return self._slots.held(owner)

    async def ask(self, question: Question) -> Answer:
        """Check the limits, record the question (if persisted), open the stream, start
        generating.

        Both limits are checked first, so a refused question leaves nothing behind:
        no stored message, no stream, no slot.
        """
        asked_at = asyncio.get_running_loop().time()
        assistant = self.assistants[question.assistant]
        _check_lengths(question, self.settings.max_message_chars)
        slot = self._slots.take(question.owner)  # raises TooManyRequests
        try:
            return await self._start(question, assistant, slot, asked_at)
        except BaseException:
            slot.release()  # recorded or not, nothing is generating for it
            raise

    async def _start(
        self, question: Question, assistant: Assistant, slot: _Slot, asked_at: float
    ) -> Answer:
        stream_id = new_id("st")
        messages = question.messages
        recorder = None
        if self.store is not None and question.persist:
            turn = await self.store.start_turn(
                question.owner,
                assistant=assistant.name,
                model=assistant.model,
                stream_id=stream_id,
                budget_chars=self.settings.history_budget_chars,
                question=None if question.regenerate else question.messages[-1].content,
                conversation_id=question.conversation_id,
                regenerate=question.regenerate,
            )
            conversation_id, message_id, messages = (
                turn.conversation_id,
                turn.answer_id,
                turn.history,
            )
            recorder = Recorder(self.store, message_id, self.settings.checkpoint_interval)
        else:
            conversation_id = question.conversation_id or new_id("conv")
            message_id = new_id("msg")
        answer = Answer(stream_id, conversation_id, message_id)
        start = events.Start(
            stream_id, conversation_id, message_id, assistant.name, int(time.time())
        )
        try:
            await self.broker.create(question.owner, stream_id)
            await self.broker.append(stream_id, start.name, events.encode(start))
        except BrokerUnavailable:
            if recorder is not None:  # recorded but never streamed: not left "streaming"
                with contextlib.suppress(TypewriterError):
                    await recorder.store.interrupt([message_id], "")
            raise
        request = ModelRequest(
            model=assistant.model,
            messages=_messages(assistant, messages),
            options=_merge(assistant.defaults, question.options),
        )
        task = asyncio.create_task(
            self._generate(answer, assistant, request, recorder, asked_at, slot)
        )
        self._tasks[stream_id] = task

        def ended(_: asyncio.Task[None]) -> None:
            # Also reached by a task cancelled before it ever ran (shutdown right
            # after ask), whose own ``finally`` never runs: the slot is freed either way.
            self._tasks.pop(stream_id, None)
            slot.release()

        task.add_done_callback(ended)
        return answer

    async def shutdown(self) -> None:
        """End every running answer (``error`` then ``end``) before the process goes."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _generate(
        self,
        answer: Answer,
        assistant: Assistant,
        request: ModelRequest,
        recorder: Recorder | None,
        asked_at: float,
        slot: _Slot,
    ) -> None:
        progress = _Progress([])
        if recorder is not None:
            recorder.start(progress.parts)
        pump = asyncio.create_task(
            self._pump(answer.stream_id, assistant, assistant.backend.stream(request), progress)
        )
        stop = asyncio.create_task(self._stop_requested(answer.stream_id))
        try:
            await asyncio.wait((pump, stop), return_when=asyncio.FIRST_COMPLETED)
            if pump.done():
                outcome = _outcome_of(pump)
            else:
                outcome = _Outcome("cancelled")
        except asyncio.CancelledError:
            outcome = _Outcome(
                "error",
                error=TypewriterError("the server is shutting down", code="interrupted"),
            )
        finally:
            for task in (pump, stop):
                task.cancel()
            await asyncio.gather(pump, stop, return_exceptions=True)
            # The model is closed: free the slot before ``end`` is appended, so a client
            # that has read ``end`` may ask again at once and be accepted.
            slot.release()
        if isinstance(outcome.error, StreamTakenOver):
            # Our lease lapsed (a stall or a Redis outage) and another replica ended the
            # stream and stored what its listeners saw; writing more would contradict it.
            log.warning("answer %s was ended by another replica", answer.stream_id)
            if recorder is not None:
                await recorder.abandon()
            return
        if recorder is not None:
            first = progress.first_at
            first_ms = (first - asked_at) * 1000 if first is not None else None
            usage = outcome.usage.to_dict() if outcome.usage else None
            await recorder.finish("".join(progress.parts), outcome.finish_reason, usage, first_ms)
        await self._finish(answer, outcome)

    async def _finish(self, answer: Answer, outcome: _Outcome) -> None:
        """``error`` (if any) then ``end``; a broker that is gone only gets a warning.

        If Redis stays unreachable, the stream's lease lapses and whichever replica
        sees it first ends the stream ``interrupted`` once Redis is back.
        """
        try:
            if outcome.error is not None:
                error = events.Error(outcome.error.code, outcome.error.message)
                await self.broker.append(answer.stream_id, error.name, events.encode(error))
            end = events.End(outcome.finish_reason, answer.message_id, outcome.usage)
            await self.broker.finish(answer.stream_id, events.encode(end))
        except (BrokerUnavailable, StreamTakenOver) as exc:
            log.warning("could not end stream %s: %s", answer.stream_id, exc.message)

    async def end_orphans(self) -> int:
        """End the streams of replicas that died: store what was shown, then ``end``.

        Called periodically on every replica of a shared broker; each orphan is
        claimed by exactly one of them.
        """
        orphans = await self.broker.claim_orphans()
        for orphan in orphans:
            await self._end_orphan(orphan)
        return len(orphans)

    async def _end_orphan(self, orphan: Orphan) -> None:
        start: events.Start | None = None
        parts: list[str] = []
        for _, name, data, _ in orphan.entries:
            event = events.decode(name, data)
            if isinstance(event, events.Start):
                start = event
            elif isinstance(event, events.Delta):
                parts.append(event.text)
        message_id = start.message_id if start is not None else ""
        if self.store is not None and message_id:
            try:
                await self.store.interrupt([message_id], "".join(parts))
            except TypewriterError as exc:  # the next start-up marks it from its checkpoint
                log.warning("could not store interrupted answer %s: %s", message_id, exc.message)
        conversation_id = start.conversation_id if start is not None else ""
        answer = Answer(orphan.stream_id, conversation_id, message_id)
        lost = TypewriterError(
            "the server generating this answer stopped; the answer ends here",
            code="interrupted",
        )
        await self._finish(answer, _Outcome("error", error=lost))

    async def _pump(
        self,
        stream_id: str,
        assistant: Assistant,
        chunks: AsyncIterator[Chunk],
        progress: _Progress,
    ) -> _Outcome:
        """Model → broker. Closing ``chunks`` on any exit is what stops the model.

        At ``max_answer_chars`` the answer is cut: the piece that crosses the limit
        is shortened so the text is exactly that long, and the answer ends
        ``length``. An answer that fills the limit exactly is not cut yet: the next
        chunk says whether the model was done (its reason stands) or had more to
        say (``length``), so ``length`` always means that text was left out.
        """
        loop = asyncio.get_running_loop()
        append = self.broker.append
        parts = progress.parts
        room = self.settings.max_answer_chars
        task = asyncio.current_task()
        assert task is not None
        timeouts = assistant.timeouts
        watchdog = _Watchdog(
            loop, task, first=timeouts.first_token, idle=timeouts.idle, total=timeouts.total
        )
        try:
            async with contextlib.aclosing(chunks):  # type: ignore[type-var]
                async for chunk in chunks:
                    watchdog.progress()
                    text = chunk.text
                    if text:
                        if room == 0:  # the limit was filled exactly and the model has more
                            return _Outcome("length")  # leaving the loop closes the model
                        if progress.first_at is None:
                            progress.first_at = loop.time()
                        cut = len(text) > room
                        if cut:
                            text = text[:room]
                        room -= len(text)
                        parts.append(text)
                        await append(stream_id, "delta", events.encode(events.Delta(text)))
                        if cut:
                            return _Outcome("length")
                    if chunk.finish_reason is not None:
                        return _Outcome(chunk.finish_reason, chunk.usage)
        except asyncio.CancelledError:
            if watchdog.fired and task.uncancel() == 0:
                raise TimeoutError from None
            raise
        finally:
            watchdog.stop()
        return _Outcome("stop")

    async def _stop_requested(self, stream_id: str) -> None:
        """Return when someone pressed Stop or nobody has listened for the grace period."""
        cancelled = asyncio.create_task(self.broker.wait_cancelled(stream_id))
        abandoned = asyncio.create_task(self.broker.wait_abandoned(stream_id, self.settings.grace))
        try:
            await asyncio.wait((cancelled, abandoned), return_when=asyncio.FIRST_COMPLETED)
        finally:
            cancelled.cancel()
            abandoned.cancel()
            await asyncio.gather(cancelled, abandoned, return_exceptions=True)


class _Watchdog:
    """Cancels a task once ``idle`` seconds pass without progress (``first`` for the first
    chunk) or ``total`` seconds pass at all.

    :meth:`progress` on each chunk stores the time: a float write per token. The
    timer is re-armed only when it fires early (and once, at the first token, when
    the deadline switches from ``first`` to ``idle``), so a stream costs one timer
    per idle period rather than one per token.
    """

    __slots__ = ("_loop", "_task", "_idle", "_end", "_handle", "_started", "last", "fired")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        task: asyncio.Task[Any],
        *,
        first: float,
        idle: float,
        total: float,
    ) -> None:
        self._loop = loop
        self._task = task
        self._idle = idle
        now = loop.time()
        self._end = now + total
        self.last = now + first - idle  # so that the first deadline is now + first
        self.fired = False
        self._started = False
        self._handle = loop.call_at(self._due(), self._check)

    def _due(self) -> float:
        return min(self.last + self._idle, self._end)

    def progress(self) -> None:
        self.last = self._loop.time()
        if not self._started:
            self._started = True
            self._handle.cancel()
            self._handle = self._loop.call_at(self._due(), self._check)

    def _check(self) -> None:
        due = self._due()
        if self._loop.time() < due:
            self._handle = self._loop.call_at(due, self._check)
            return
        self.fired = True
        self._task.cancel()

    def stop(self) -> None:
        self._handle.cancel()


class _Slots:
    """Answers generating per owner, in this process; ``take`` refuses the one too many.

    Only owners with an answer generating have an entry, so memory follows the
    number of running answers, not the number of users ever seen.
    """

    __slots__ = ("_limit", "_held")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._held: dict[str, int] = {}

    def held(self, owner: str) -> int:
        return self._held.get(owner, 0)

    def take(self, owner: str) -> _Slot:
        held = self._held.get(owner, 0)
        if held >= self._limit:
            raise TooManyRequests(
                f"{held} answers are already generating for you, the most allowed at once "
                f"(max_streams_per_user = {self._limit}); wait for one to end or stop one "
                "with POST /v1/streams/{stream_id}/cancel",
                code="too_many_streams",
                retry_after=STREAMS_RETRY_AFTER,
            )
        # Counted at once, before any await: concurrent asks cannot all pass the check.
        self._held[owner] = held + 1
        return _Slot(self, owner)

    def give_back(self, owner: str) -> None:
        held = self._held.get(owner, 0) - 1
        if held > 0:
            self._held[owner] = held
        else:
            self._held.pop(owner, None)


class _Slot:
    """One owner's place among its generating answers; ``release`` is idempotent
    because the generation frees it early (before ``end``) and its task's done
    callback frees it again as a safety net."""

    __slots__ = ("_slots", "_owner", "_held")

    def __init__(self, slots: _Slots, owner: str) -> None:
        self._slots = slots
        self._owner = owner
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._slots.give_back(self._owner)


def _check_lengths(question: Question, limit: int) -> None:
    """Refuse a message longer than ``limit`` characters (code points), naming its position."""
    lengths = {i: len(m.content) for i, m in enumerate(question.messages) if len(m.content) > limit}
    if lengths:
        raise MessageTooLong(lengths, limit)


def _outcome_of(pump: asyncio.Task[_Outcome]) -> _Outcome:
    error = pump.exception()
    if error is None:
        return pump.result()
    if isinstance(error, TimeoutError):
        return _Outcome(
            "timeout",
            error=ModelTimeout("the model took too long; the answer was ended"),
        )
    if isinstance(error, ModelError | BrokerUnavailable | StreamTakenOver):
        return _Outcome("error", error=error)
    log.error("generation failed", exc_info=error)
    return _Outcome("error", error=TypewriterError("the answer failed on the server"))


def _messages(assistant: Assistant, messages: tuple[ChatMessage, ...]) -> tuple[ChatMessage, ...]:
    system = (ChatMessage("system", assistant.system_prompt),) if assistant.system_prompt else ()
    return (*system, *messages)


def _merge(defaults: GenerationOptions, given: GenerationOptions) -> GenerationOptions:
    return GenerationOptions(
        temperature=given.temperature if given.temperature is not None else defaults.temperature,
        top_p=given.top_p if given.top_p is not None else defaults.top_p,
        max_tokens=given.max_tokens if given.max_tokens is not None else defaults.max_tokens,
        simulate=given.simulate,
    )
