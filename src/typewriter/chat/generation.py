"""One answer's generation: model → stream, raced against Stop and abandonment, ended on
every path.

The task never waits for listeners. It races the model against the two reasons
to stop early (a cancel asked from anywhere, or nobody listening for the grace
period) and, on every exit path, closes the model's iterator and appends
``end`` with the reason. Closing the iterator is what stops the model upstream;
``end`` is what lets every listener stop reading.

An answer may be written by more than one upstream: when the one writing it fails
after its response began, the next of the assistant's chain continues it in the
same stream (``_switch``), after a ``notice``. The parts are kept (``_Part``) so
the store says who wrote what and the usage adds up what each part cost.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from typewriter import events
from typewriter.assistants import Assistant
from typewriter.config import Settings
from typewriter.errors import (
    BrokerFull,
    BrokerUnavailable,
    ModelError,
    ModelTimeout,
    StoreUnavailable,
    StreamTakenOver,
    TypewriterError,
)
from typewriter.events import Usage
from typewriter.models.base import Chunk, Continuation, ModelRequest, Source
from typewriter.models.think_tags import split_think_tags
from typewriter.observe import timing
from typewriter.observe.answer_log import log_answer
from typewriter.observe.metrics import Metrics
from typewriter.recorder import Recorder
from typewriter.slots import Slot
from typewriter.streams.base import Control, Presence, StreamLog
from typewriter.streams.budget import OverBudget
from typewriter.token_estimate import estimate_prompt_tokens, estimate_tokens

from .watchdog import Watchdog

__all__ = ["Answer", "Generation", "GenerationBroker", "Outcome"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Answer:
    """The ids of an answer: its stream, its conversation, its stored message and the
    question it answers (when stored)."""

    stream_id: str
    conversation_id: str
    message_id: str
    question_id: str | None = None


@dataclass(slots=True)
class _Part:
    """What one upstream wrote of the answer: from which character of the text (and of the
    reasoning) on, why it stopped early (None: it did not, or not yet), the time from the
    failure before it to its first piece, and its own count of tokens if it gave one."""

    source: Source
    start: int
    reasoning_start: int
    gap_ms: float | None = None
    failure: str | None = None
    usage: Usage | None = None


@dataclass(slots=True)
class _Progress:
    """What the model produced so far: shared by the pump, the recorder and the end."""

    parts: list[str]
    reasoning: list[str] = field(default_factory=list)  # the model's thinking, kept apart
    arguments: list[str] = field(default_factory=list)  # its tool calls' argument pieces
    first_at: float | None = None
    # (part index, its number in the stream) where the numbering of the parts jumps (the
    # first part, and one after reasoning or a tool call): the others follow by one
    jumps: list[tuple[int, int]] = field(default_factory=list)
    last_seq: int = -1  # the number of the last part
    # each reasoning piece's number in the stream; None: hidden, never on the stream
    reasoning_seqs: list[int | None] = field(default_factory=list)
    timing: timing.ModelTiming | None = None
    usage: Usage | None = None  # the last usage the model sent (vLLM's continuous usage)
    # Who wrote which part, in order: one per upstream response that began (none for a model
    # in the process); the last is being written, unless a switch is under way.
    sources: list[_Part] = field(default_factory=list)
    failed_at: float | None = None  # when the last switch's failure was seen, until a piece
    failure: str | None = None  # why the last part failed, from the switch to the next part

    @property
    def writing(self) -> bool:
        """The last part's response is the one being read (no switch under way)."""
        return bool(self.sources) and self.failure is None

    def spans(self) -> list[tuple[_Part | None, int, int, int, int]]:
        """Each part with its ranges of the text and of the reasoning (``start``, ``end``,
        ``reasoning start``, ``reasoning end``), clipped to what was kept (a piece the
        broker refused is in neither); one unnamed part for a model in the process."""
        size, thought = sum(map(len, self.parts)), sum(map(len, self.reasoning))
        parts: list[_Part | None] = list(self.sources) or [None]
        starts = [(p.start, p.reasoning_start) for p in self.sources[1:]]
        bounds = zip([(0, 0), *starts], [*starts, (size, thought)], strict=True)
        return [
            (part, min(start, size), min(end, size), min(r_start, thought), min(r_end, thought))
            for part, ((start, r_start), (end, r_end)) in zip(parts, bounds, strict=True)
        ]

    def stored_sources(self) -> list[dict[str, Any]]:
        """The parts as stored: character ranges of the final text."""
        return [
            {
                "upstream": part.source.upstream,
                "model": part.source.model,
                "start": start,
                "end": end,
                "failure": part.failure,
                "gap_ms": None if part.gap_ms is None else round(part.gap_ms, 1),
            }
            for part, start, end, _, _ in self.spans()
            if part is not None
        ]

    def shown(self, written: int) -> None:
        """Keep only the pieces whose events the stream holds (up to event ``written``):
        the rest were refused (Redis full), so nobody saw them and they are not stored.
        Hidden reasoning was never on the stream, so it is kept."""
        at = bisect.bisect_right(self.jumps, written, key=lambda jump: jump[1]) - 1
        if at < 0:
            kept = 0
        else:
            index, seq = self.jumps[at]
            run_end = self.jumps[at + 1][0] if at + 1 < len(self.jumps) else len(self.parts)
            kept = index + min(run_end - index, written - seq + 1)
        del self.parts[kept:], self.jumps[at + 1 :]
        pieces = zip(self.reasoning, self.reasoning_seqs, strict=True)
        kept_reasoning = [(t, n) for t, n in pieces if n is None or n <= written]
        self.reasoning[:] = [t for t, _ in kept_reasoning]
        self.reasoning_seqs[:] = [n for _, n in kept_reasoning]


@dataclass(slots=True)
class _Room:
    """What is left of the answer's limits (``max_answer_chars``, ``max_reasoning_chars``):
    the answer's, not an upstream's, so carried from one upstream to the next."""

    text: int
    reasoning: int


@dataclass(slots=True)
class Outcome:
    """How an answer ended: the reason ``end`` gives, and the error before it, if any."""

    finish_reason: str
    usage: Usage | None = None
    error: TypewriterError | None = None


class GenerationBroker(StreamLog, Control, Presence, Protocol):
    """What a generation needs of the broker: the log, Stop, and who is listening."""


class Generation:
    """Runs answers on a broker: the pump, the race against Stop, and the ending."""

    def __init__(
        self, settings: Settings, broker: GenerationBroker, metrics: Metrics | None = None
    ) -> None:
        self.settings = settings
        self.broker = broker
        self.metrics = metrics or Metrics()

    async def run(
        self,
        answer: Answer,
        assistant: Assistant,
        request: ModelRequest,
        recorder: Recorder | None,
        asked_at: float,
        slot: Slot,
    ) -> None:
        """Generate one answer to its end: whatever stops it, the model is closed, the slot
        freed, the text so far stored (before ``end``, so a client that read ``end`` finds
        it) and ``end`` appended, unless another replica already ended the stream."""
        metrics = self.metrics
        metrics.answer_started(assistant.name)
        progress = _Progress([])
        if recorder is not None:
            recorder.start(progress.parts, progress.reasoning)
        chunks = assistant.backend.stream(request)
        if assistant.think_tags:  # the model writes its reasoning into the text
            chunks = split_think_tags(chunks)
        pump = asyncio.create_task(
            self._pump(answer.stream_id, assistant, request, chunks, progress, asked_at)
        )
        stop = asyncio.create_task(self._stop_requested(answer.stream_id, recorder))
        stop_heard_at: float | None = None
        try:
            await asyncio.wait((pump, stop), return_when=asyncio.FIRST_COMPLETED)
            if pump.done():
                outcome = _outcome_of(pump)
            else:
                outcome = Outcome("cancelled")
                stop_heard_at = time.monotonic()
        except asyncio.CancelledError:
            outcome = Outcome(
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
        if stop_heard_at is None:
            metrics.forget_stop(answer.stream_id)
        else:  # the model's iterator is closed: the upstream request with it
            metrics.stopped(answer.stream_id, stop_heard_at)
        if isinstance(outcome.error, BrokerUnavailable):
            metrics.broker_failed("append")
        if isinstance(outcome.error, StreamTakenOver):
            # Our lease lapsed (a stall or a Redis outage) and another replica ended the
            # stream and stored what its listeners saw; writing more would contradict it.
            log.warning("answer %s was ended by another replica", answer.stream_id)
            metrics.answer_ended(assistant.name, "error")
            if recorder is not None:
                await recorder.abandon()
            return
        try:
            for last_try in (False, True):
                if isinstance(outcome.error, BrokerFull):
                    progress.shown(outcome.error.written)
                outcome = _counted(outcome, progress, request)
                try:
                    await self._store(recorder, progress, outcome, asked_at)
                except StoreUnavailable as lost:  # its question's commit failed: nothing kept
                    outcome = Outcome("error", outcome.usage, lost)
                try:
                    await self.finish(answer, outcome, quiet=last_try)
                    break
                except BrokerFull as full:
                    # Redis refused a delta that was in flight when the answer ended: the
                    # end followed it and was dropped. End again, after what Redis holds.
                    outcome = Outcome("error", error=full)
        finally:
            metrics.answer_ended(assistant.name, outcome.finish_reason)
            _log_end(answer, slot.owner, assistant, progress, outcome, asked_at)

    @staticmethod
    async def _store(
        recorder: Recorder | None, progress: _Progress, outcome: Outcome, asked_at: float
    ) -> None:
        """Store the answer's end (before ``end`` is appended: a client that read it finds it)."""
        if recorder is None:
            return
        first = progress.first_at
        first_ms = (first - asked_at) * 1000 if first is not None else None
        usage = outcome.usage.to_dict() if outcome.usage else None
        # Cut by the server (a drain's deadline, a second signal): stored as the answers
        # of a replica that died are, so history tells it apart from a model's failure.
        cut = outcome.error is not None and outcome.error.code == "interrupted"
        await recorder.finish(
            "".join(progress.parts),
            outcome.finish_reason,
            usage,
            first_ms,
            status="interrupted" if cut else "done",
            reasoning="".join(progress.reasoning),
            sources=progress.stored_sources(),
        )

    async def finish(self, answer: Answer, outcome: Outcome, *, quiet: bool = True) -> None:
        """``error`` (if any) then ``end``; a broker that is gone only gets a warning.

        If Redis stays unreachable, the stream's lease lapses and whichever replica
        sees it first ends the stream ``interrupted`` once Redis is back. Unless
        ``quiet``, a full Redis (:class:`BrokerFull`) is raised: the caller ends the
        answer again, after the last event Redis holds.
        """
        try:
            if outcome.error is not None:
                error = events.Error(outcome.error.code, outcome.error.message)
                await self.broker.append(answer.stream_id, error.name, events.encode(error))
            end = events.End(outcome.finish_reason, answer.message_id, outcome.usage)
            await self.broker.finish(answer.stream_id, events.encode(end))
        except (BrokerUnavailable, StreamTakenOver) as exc:
            if isinstance(exc, BrokerFull) and not quiet:
                raise
            log.warning("could not end stream %s: %s", answer.stream_id, exc.message)

    async def _pump(
        self,
        stream_id: str,
        assistant: Assistant,
        request: ModelRequest,
        chunks: AsyncIterator[Chunk],
        progress: _Progress,
        asked_at: float,
    ) -> Outcome:
        """Model → broker, through every upstream that writes the answer.

        An upstream that fails once its response began (an error, or a stall past the
        idle timeout) hands the answer to the next of its chain when the assistant
        allows it (``_switch``): the pieces that follow go to the same stream, after a
        ``notice``, so the listener reads one answer. The answer's total time is its
        own, never restarted by a switch.
        """
        progress.timing = timing.track()
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        timeouts = assistant.timeouts
        watchdog = Watchdog(
            loop, task, first=timeouts.first_token, idle=timeouts.idle, total=timeouts.total
        )
        room = _Room(self.settings.max_answer_chars, self.settings.max_reasoning_chars)
        shown = assistant.reasoning == "show"
        try:
            while True:
                failure: ModelError | TimeoutError
                try:
                    return await self._relay(
                        stream_id, chunks, progress, room, watchdog, asked_at, shown
                    )
                except ModelError as error:
                    failure = error
                except asyncio.CancelledError:
                    if not (watchdog.fired and task.uncancel() == 0):
                        raise
                    failure = TimeoutError()
                    if watchdog.total_spent:  # the answer's own time is up: not continued
                        raise failure from None
                following = self._switch(assistant, request, progress, failure, loop.time())
                if following is None:
                    raise failure
                chunks = following
                watchdog.restart()
        finally:
            watchdog.stop()

    async def _relay(
        self,
        stream_id: str,
        chunks: AsyncIterator[Chunk],
        progress: _Progress,
        room: _Room,
        watchdog: Watchdog,
        asked_at: float,
        shown: bool,
    ) -> Outcome:
        """One upstream's chunks → broker. Closing ``chunks`` on any exit is what stops
        the model.

        At ``max_answer_chars`` the answer is cut: the piece that crosses the limit
        is shortened so the text is exactly that long, and the answer ends
        ``length``; so it does when the broker has no room for the next piece
        (``OverBudget``: answers still being written fill its memory budget). An
        answer that fills the limit exactly is not cut yet: the next chunk says
        whether the model was done (its reason stands) or had more to say
        (``length``), so ``length`` always means that text was left out.

        The first piece of text is timed once (ask → first piece, and the model's
        own share of it since its request was sent, see ``observe.timing``).
        """
        loop = asyncio.get_running_loop()
        append = self.broker.append
        parts = progress.parts
        text_room = room.text
        try:
            async with contextlib.aclosing(chunks):  # type: ignore[type-var]
                async for chunk in chunks:
                    if chunk.source is not None:  # a response began: its upstream
                        try:
                            await self._source(stream_id, chunk.source, progress)
                        except OverBudget:
                            return Outcome("length")
                        continue
                    watchdog.progress()
                    if chunk.usage is not None:
                        progress.usage = chunk.usage
                    if progress.failed_at is not None and (chunk.text or chunk.reasoning):
                        _continued(progress, loop.time())
                    if chunk.reasoning and room.reasoning:
                        if progress.first_at is None and shown:  # what a client saw first
                            self._first_piece(progress, loop.time(), asked_at)
                        try:
                            room.reasoning = await self._reason(
                                stream_id, chunk.reasoning, room.reasoning, progress, shown
                            )
                        except OverBudget:
                            return Outcome("length")
                    text = chunk.text
                    if text or chunk.tool_calls:
                        if text_room == 0:  # the limit was filled exactly and the model has more
                            return Outcome("length")  # leaving the loop closes the model
                        if progress.first_at is None:
                            self._first_piece(progress, loop.time(), asked_at)
                        cut = len(text) > text_room
                        if cut:
                            text = text[:text_room]
                        text_room -= len(text)
                        if text:
                            parts.append(text)
                            delta = events.Delta(text, chunk.logprobs)
                            try:
                                seq = await append(stream_id, "delta", events.encode(delta))
                            except OverBudget:  # running answers fill the broker's memory
                                parts.pop()  # never appended: what was shown is what is stored
                                return Outcome("length")
                            if seq != progress.last_seq + 1:
                                progress.jumps.append((len(parts) - 1, seq))
                            progress.last_seq = seq
                        if chunk.tool_calls and not cut:
                            try:
                                text_room = await self._call(
                                    stream_id, chunk.tool_calls, text_room, progress.arguments
                                )
                            except OverBudget:
                                return Outcome("length")
                            cut = text_room < 0
                        if cut:
                            return Outcome("length")
                    if chunk.finish_reason is not None:
                        return Outcome(chunk.finish_reason, chunk.usage)
        finally:
            room.text = text_room
        return Outcome("stop")

    def _switch(
        self,
        assistant: Assistant,
        request: ModelRequest,
        progress: _Progress,
        failure: ModelError | TimeoutError,
        now: float,
    ) -> AsyncIterator[Chunk] | None:
        """The chunks that continue the answer on the next upstream of its chain, or None
        when it ends with ``failure``: continuing is off, the switches are used up, no
        response had begun (the chain was already walked before it), or the answer was
        calling a tool (half a call's arguments cannot be continued by another model)."""
        if not (assistant.continue_on_failure and progress.writing and not progress.arguments):
            return None
        if len(progress.sources) > assistant.max_switches:
            return None
        part = progress.sources[-1]
        why = "stall" if isinstance(failure, TimeoutError) else failure.code
        partial = "".join(progress.parts)
        following = assistant.backend.continue_answer(
            request, partial, Continuation(part.source, why)
        )
        if following is None:
            return None
        log.warning(
            "upstream %s failed mid-answer (%s) after %d characters; asking the next upstream "
            "of the chain to continue",
            part.source.upstream,
            why,
            len(partial),
        )
        progress.failed_at, progress.failure = now, why
        if assistant.think_tags:
            following = split_think_tags(following)
        return following

    async def _source(self, stream_id: str, source: Source, progress: _Progress) -> None:
        """A response began: a new part of the answer, and at a switch the ``notice`` that
        tells the listener another upstream goes on from here."""
        if progress.sources:
            # The part before ends here: only now is it known that another one continued it.
            before = progress.sources[-1]
            before.failure, before.usage = progress.failure, progress.usage
            progress.failure, progress.usage = None, None
            notice = events.Notice(
                "failover", before.source.upstream, source.upstream, source.model
            )
            await self.broker.append(stream_id, notice.name, events.encode(notice))
        progress.sources.append(
            _Part(source, sum(map(len, progress.parts)), sum(map(len, progress.reasoning)))
        )

    def _first_piece(self, progress: _Progress, now: float, asked_at: float) -> None:
        """Time the first thing the model showed (its reasoning or its answer), once."""
        progress.first_at = now
        sent_at = progress.timing.sent_at if progress.timing is not None else time.monotonic()
        self.metrics.first_token_appended(now - asked_at, time.monotonic() - sent_at)

    async def _reason(
        self, stream_id: str, text: str, room: int, progress: _Progress, shown: bool
    ) -> int:
        """Keep (and, if the assistant shows it, append) a piece of reasoning; the room
        left under ``max_reasoning_chars``. Reasoning past that bound is dropped and the
        answer goes on: the thinking is the model's working, the answer is what was asked."""
        text = text[:room]
        seq = None
        if shown:
            reasoning = events.encode(events.Reasoning(text))
            seq = await self.broker.append(stream_id, "reasoning", reasoning)
        progress.reasoning.append(text)
        progress.reasoning_seqs.append(seq)
        return room - len(text)

    async def _call(
        self, stream_id: str, calls: tuple[events.ToolCall, ...], room: int, kept: list[str]
    ) -> int:
        """Append a chunk's tool-call fragments, as they came; the room left under
        ``max_answer_chars`` (the calls are the answer: their ids and names count with
        their arguments), negative when a fragment did not fit: its arguments were cut
        there, and the answer ends ``length``."""
        for call in calls:
            arguments = call.arguments
            room -= len(call.id or "") + len(call.function or "")
            if len(arguments) > max(room, 0):
                call = events.ToolCall(
                    call.index, arguments[: max(room, 0)], call.id, call.function
                )
            room -= len(arguments)
            await self.broker.append(stream_id, call.name, events.encode(call))
            kept.append(call.arguments)
            if room < 0:
                break
        return room

    async def _stop_requested(self, stream_id: str, recorder: Recorder | None) -> None:
        """Return when someone pressed Stop, nobody has listened for the grace period, or
        the answer's row was deleted (its conversation deleted or cleared)."""
        waits = [
            asyncio.create_task(self.broker.wait_cancelled(stream_id)),
            asyncio.create_task(self.broker.wait_abandoned(stream_id, self.settings.grace)),
        ]
        if recorder is not None:
            waits.append(asyncio.create_task(recorder.wait_deleted()))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
            await asyncio.gather(*waits, return_exceptions=True)


def _log_end(
    answer: Answer,
    user: str,
    assistant: Assistant,
    progress: _Progress,
    outcome: Outcome,
    asked_at: float,
) -> None:
    now = asyncio.get_running_loop().time()
    first = progress.first_at
    upstream = progress.timing.upstream if progress.timing is not None else None
    log_answer(
        stream_id=answer.stream_id,
        user=user,
        assistant=assistant.name,
        # Every upstream that wrote part of it, in order, and the model that began it.
        upstream="+".join(p.source.upstream for p in progress.sources)
        or upstream
        or assistant.backend.name,
        model=progress.sources[0].source.model if progress.sources else assistant.model,
        finish_reason=outcome.finish_reason,
        error_code=outcome.error.code if outcome.error is not None else None,
        chars=sum(map(len, progress.parts)),
        tokens=outcome.usage.completion_tokens if outcome.usage is not None else None,
        first_token_ms=(first - asked_at) * 1000 if first is not None else None,
        duration_ms=(now - asked_at) * 1000,
    )


def _continued(progress: _Progress, now: float) -> None:
    """The first piece after a switch: the time since the failure, kept with its part."""
    assert progress.failed_at is not None
    progress.sources[-1].gap_ms = (now - progress.failed_at) * 1000
    progress.failed_at = None


def _counted(outcome: Outcome, progress: _Progress, request: ModelRequest) -> Outcome:
    """The outcome with usage on every ending: the model's own count when it gave one
    (at the end, or the last running count it sent), else the gateway's estimate of
    the prompt sent and what the model said (its reasoning, text and tool calls' arguments),
    marked ``estimated``. An answer written by several upstreams costs what each one
    counted (or is estimated to have): their sum."""
    if outcome.usage is not None and len(progress.sources) <= 1:
        return outcome
    return Outcome(outcome.finish_reason, _summed(progress, request), outcome.error)


def _summed(progress: _Progress, request: ModelRequest) -> Usage:
    """Each part's usage, the upstream's own or estimated (its prompt carried the text
    shown before it), added up. The last part's is the last count its upstream sent, and
    the tool calls' arguments are its own (an answer calling a tool is never continued)."""
    text, reasoning = "".join(progress.parts), "".join(progress.reasoning)
    prompt = estimate_prompt_tokens(m.read_text for m in request.messages)
    spans = progress.spans()
    prompt_tokens = completion_tokens = 0
    estimated = False
    for i, (part, start, end, r_start, r_end) in enumerate(spans):
        last = i == len(spans) - 1
        usage = progress.usage if last else (part.usage if part is not None else None)
        if usage is None:
            said = reasoning[r_start:r_end] + text[start:end]
            if last:
                said += "".join(progress.arguments)
            usage = Usage(
                prompt + estimate_tokens(text[:start]), estimate_tokens(said), estimated=True
            )
        prompt_tokens += usage.prompt_tokens
        completion_tokens += usage.completion_tokens
        estimated = estimated or usage.estimated
    return Usage(prompt_tokens, completion_tokens, estimated)


def _outcome_of(pump: asyncio.Task[Outcome]) -> Outcome:
    error = pump.exception()
    if error is None:
        return pump.result()
    if isinstance(error, TimeoutError):
        return Outcome(
            "timeout",
            error=ModelTimeout("the model took too long; the answer was ended"),
        )
    if isinstance(error, ModelError | BrokerUnavailable | StreamTakenOver):
        return Outcome("error", error=error)
    log.error("generation failed", exc_info=error)
    return Outcome("error", error=TypewriterError("the answer failed on the server"))
