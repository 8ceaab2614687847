"""Saving the answers while they stream, so that nothing shown to a user is lost.

One :class:`Checkpointer` per process saves every running answer: each
``interval`` seconds it writes the text and the reasoning of all the answers
whose text or reasoning grew, in one transaction, so a ``kill -9`` loses at
most about one interval of either and the database sees one write per interval
however many answers run. The token
path never waits for it: a slow database slows the checkpoints, not the tokens.

When an answer ends, its final text is written once before its ``end`` (so a
client that read ``end`` finds it stored). If that write fails (a full disk, a
database away), the answer's full text is kept here and written again, with
backoff, until it succeeds or the server stops; ``end`` is not held back for
it, nor the user's slot. What is still unsaved when the server stops stays
``streaming`` with its last checkpoint, and the next start-up marks it
``interrupted`` — the same as if the process had died.

A :class:`Recorder` is one answer's handle on the checkpointer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from typewriter.errors import TypewriterError
from typewriter.store.answers import Ending
from typewriter.store.sql import SqlStore

__all__ = ["Checkpointer", "Recorder"]

log = logging.getLogger(__name__)

FIRST_SAVE_TIMEOUT = 2.0
"""How long an answer's ``end`` may wait for its final save before it goes out anyway."""
SAVE_TIMEOUT = 5.0
"""A bound on any one write, so a database that hangs cannot stall the saving."""
RETRY_FIRST, RETRY_MAX = 0.25, 2.0
"""Backoff of the final saves that failed: doubling from the first to the most."""
STOP_WAIT = 3.0
"""How long a stopping server gives the unsaved answers a last chance."""


@dataclass(slots=True)
class _Running:
    parts: list[str]  # the generation's own list: it grows as the model speaks
    gone: asyncio.Event  # set when its row was deleted (its conversation deleted or cleared)
    reasoning: list[str]  # the generation's list of reasoning pieces, grown the same way
    saved: int = 0  # how many of the parts the last checkpoint held
    saved_reasoning: int = 0  # how many of the reasoning pieces it held


class Checkpointer:
    """Every running answer's checkpoints in one write per interval, and the final saves
    until they succeed.

    Its task runs only while there is something to save (it starts with the first
    answer and ends when none runs and nothing is unsaved), so a checkpointer that no
    server ever stops leaves nothing behind.
    """

    def __init__(self, store: SqlStore, interval: float) -> None:
        self.store = store
        self.interval = interval
        self._running: dict[str, _Running] = {}
        self._unsaved: dict[str, Ending] = {}
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._failing = False

    @property
    def unsaved(self) -> int:
        """How many ended answers wait for their final save."""
        return len(self._unsaved)

    def track(
        self, message_id: str, parts: list[str], reasoning: list[str] | None = None
    ) -> asyncio.Event:
        """Checkpoint ``parts`` and ``reasoning`` (each joined) every interval while they
        grow; the event returned is set if the answer's row is found deleted (then it is no
        longer checkpointed)."""
        running = _Running(parts, asyncio.Event(), reasoning if reasoning is not None else [])
        self._running[message_id] = running
        self._ensure_task()
        return running.gone

    def forget(self, message_id: str) -> None:
        """Stop checkpointing without a final save (someone else stored the answer)."""
        self._running.pop(message_id, None)

    async def finish(self, final: Ending) -> None:
        """Write the answer's end now if the store takes it soon, else keep it to retry.

        When earlier final saves are still waiting, the store is known to fail: this
        one joins them at once rather than hold its ``end`` back for a write that is
        likely to fail too.
        """
        self._running.pop(final.message_id, None)
        if not self._unsaved and not self._stopping.is_set():
            try:
                async with asyncio.timeout(FIRST_SAVE_TIMEOUT):
                    await self._write_final(final)
                return
            except (TypewriterError, TimeoutError):
                pass
        log.warning("final save of %s not done yet; retrying until it is", final.message_id)
        self._unsaved[final.message_id] = final
        self._ensure_task()

    async def stop(self, timeout: float = STOP_WAIT) -> None:
        """Give the unsaved answers one last chance within ``timeout`` seconds, then go.

        What is left stays ``streaming`` with its last checkpoint in the store, and the
        next start-up marks it ``interrupted``.
        """
        self._stopping.set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if self._task is not None:
            await asyncio.wait((self._task,), timeout=timeout)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._unsaved and loop.time() < deadline:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(deadline - loop.time()):
                    await self._save_finals()
        if self._unsaved:
            log.warning(
                "%d answer(s) could not be saved at their end (%s); they keep their last "
                "checkpoint and will be marked interrupted at the next start",
                len(self._unsaved),
                ", ".join(self._unsaved),
            )

    def _ensure_task(self) -> None:
        if (self._task is None or self._task.done()) and not self._stopping.is_set():
            self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        """Checkpoints at a fixed rate (a slow write skips ticks rather than drift), final
        saves with backoff, until nothing is left to save or the server stops."""
        loop = asyncio.get_running_loop()
        next_checkpoint = loop.time() + self.interval
        retry_at = loop.time() + RETRY_FIRST
        backoff = RETRY_FIRST
        while self._running or self._unsaved:
            wake = min(next_checkpoint, retry_at) if self._unsaved else next_checkpoint
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, wake - loop.time())):
                    await self._stopping.wait()
            if self._stopping.is_set():
                return
            if loop.time() >= next_checkpoint:
                next_checkpoint = max(next_checkpoint + self.interval, loop.time())
                await self._save_checkpoints()
            if self._unsaved and loop.time() >= retry_at:
                if await self._save_finals():
                    backoff = RETRY_FIRST
                else:
                    backoff = min(backoff * 2, RETRY_MAX)
                retry_at = loop.time() + backoff

    async def _save_checkpoints(self) -> None:
        """One write holding every answer whose text or reasoning grew since its last
        checkpoint (both are written: one statement for every row).

        The same transaction looks for running answers whose rows are gone: a
        conversation deleted while its answer was being written stops that answer here,
        within an interval, even when the deletion could not reach the stream (an ask
        between recording its answer and creating the stream, on any replica).
        """
        sizes = [
            (message_id, r, len(r.parts), len(r.reasoning))
            for message_id, r in self._running.items()
        ]
        grown = [(i, r, n, m) for i, r, n, m in sizes if n > r.saved or m > r.saved_reasoning]
        texts = [(message_id, "".join(r.parts[:n])) for message_id, r, n, _ in grown]
        reasoning = {i: "".join(r.reasoning[:m]) for i, r, _, m in grown if m}
        try:
            async with asyncio.timeout(SAVE_TIMEOUT):
                gone = await self.store.checkpoint_many(
                    texts, list(self._running), reasoning=reasoning
                )
        except (TypewriterError, TimeoutError) as exc:
            if not self._failing:
                log.warning("checkpoints not saved (retrying each interval): %s", _why(exc))
            self._failing = True
            return
        if self._failing:
            log.info("checkpoints saved again")
            self._failing = False
        for _, running, count, reasoned in grown:
            running.saved, running.saved_reasoning = count, reasoned
        for message_id in gone & self._running.keys():
            self._running.pop(message_id).gone.set()

    async def _save_finals(self) -> bool:
        """Write the waiting final saves, oldest first; whether all are written now."""
        for final in list(self._unsaved.values()):
            try:
                async with asyncio.timeout(SAVE_TIMEOUT):
                    await self._write_final(final)
            except (TypewriterError, TimeoutError):
                return False
            del self._unsaved[final.message_id]
            log.info("final save of %s done after retrying", final.message_id)
        return True

    async def _write_final(self, final: Ending) -> None:
        await self.store.finish(
            final.message_id,
            final.text,
            final.finish_reason,
            final.usage,
            final.first_token_ms,
            final.status,
            reasoning=final.reasoning or None,
            sources=final.sources,
        )


def _why(exc: Exception) -> str:
    return exc.message if isinstance(exc, TypewriterError) else "the store took too long"


class Recorder:
    """One answer's saving: tracked while it streams, finished once, or abandoned."""

    def __init__(self, checkpointer: Checkpointer, message_id: str) -> None:
        self.checkpointer = checkpointer
        self.message_id = message_id
        self._gone: asyncio.Event | None = None

    @property
    def store(self) -> SqlStore:
        return self.checkpointer.store

    def start(self, parts: list[str], reasoning: list[str] | None = None) -> None:
        """Checkpoint the answer's text and reasoning as the lists grow."""
        self._gone = self.checkpointer.track(self.message_id, parts, reasoning)

    async def wait_deleted(self) -> None:
        """Return when the answer's row was found deleted: nobody can read it any more, so
        generating it further only costs."""
        assert self._gone is not None, "start() first"
        await self._gone.wait()

    async def abandon(self) -> None:
        """Stop checkpointing without a final save (someone else stored the answer)."""
        self.checkpointer.forget(self.message_id)

    async def finish(
        self,
        text: str,
        finish_reason: str,
        usage: dict[str, int] | None,
        first_token_ms: float | None,
        status: str = "done",
        reasoning: str = "",
        sources: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        """Store the answer's end: at once if the store takes it, else later (retried)."""
        await self.checkpointer.finish(
            Ending(
                self.message_id,
                text,
                finish_reason,
                usage,
                first_token_ms,
                status,
                reasoning,
                sources,
            )
        )
