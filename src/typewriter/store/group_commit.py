"""Group commit: new conversations' first turns written after their ask returned, many
to a transaction.

Recording a question costs an idle SQLite server most of an ask (a transaction of a
few statements, each a hop to the driver's thread). A turn's writes are inserts whose
ids are made in the process (``new_turns``), so the ask only queues them here and goes
on: the ``202`` and the first token do not wait for the disk. One task writes what is
queued, at most ``window`` seconds after the first of it, the batch in one transaction.

What it promises, and who keeps each promise:

- read-your-writes on this server: every store operation first waits for what was
  queued before it (``settled``, called by ``SqlStore.transaction``), so a
  ``GET`` right after the ``202``, a Stop's save or the answer's checkpoints find the
  rows;
- ``end`` after the commit: each turn's future says whether its batch committed, and
  the answer's final save waits for it (``chat.pending``);
- never a silent loss: a batch that fails is written again one turn at a time (one
  bad turn, say into a conversation deleted meanwhile, must not take the others with
  it), and a turn that still fails fails its future with ``StoreUnavailable``, logged;
  its answer ends ``error``, and nothing of it is stored (one transaction);
- nothing queued is dropped on the way out: ``close`` writes what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection

from typewriter.errors import StoreUnavailable, TypewriterError

__all__ = ["GroupCommitter"]

log = logging.getLogger(__name__)

T = TypeVar("T")
Report = Callable[[str, float, bool], None]
"""``(operation, seconds, failed)``: the store's operation timing (``observe.timed``)."""
Write = Callable[[AsyncConnection, list[T]], Awaitable[None]]
Transaction = Callable[[], contextlib.AbstractAsyncContextManager[AsyncConnection]]

NOT_STORED = "the question could not be stored; the answer was ended"


class GroupCommitter(Generic[T]):
    """Queues items, writes them with ``write`` in one ``transaction`` per batch."""

    def __init__(
        self,
        transaction: Transaction,
        write: Write[T],
        window: float,
        *,
        what: str = "new question(s)",
        failed: str = NOT_STORED,
        operation: str = "new_turns",
    ) -> None:
        self._transaction = transaction
        self.operation = operation
        # Set by the gateway with its metrics: a batch is a transaction no caller awaits,
        # so the timing proxy around the store never sees it.
        self.report: Report | None = None
        self._what = what
        self._failed = failed
        self._write = write
        self.window = window
        self._queue: list[tuple[T, asyncio.Future[None]]] = []
        self._writing: list[asyncio.Future[None]] = []
        self._task: asyncio.Task[None] | None = None

    def submit(self, item: T) -> asyncio.Future[None]:
        """Queue ``item``; the future is done when its batch committed (or failed with
        ``StoreUnavailable``)."""
        committed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        committed.add_done_callback(_retrieved)
        self._queue.append((item, committed))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())
        return committed

    async def settled(self) -> None:
        """Return once everything queued so far is committed or has failed."""
        waiting = [*self._writing, *(future for _, future in self._queue)]
        if waiting:
            await asyncio.wait(waiting)

    async def close(self) -> None:
        """Write what is queued now, without waiting out the window."""
        self.window = 0.0
        await self.settled()

    async def _run(self) -> None:
        while self._queue:
            if self.window:
                await asyncio.sleep(self.window)
            batch, self._queue = self._queue, []
            self._writing = [future for _, future in batch]
            try:
                await self._commit(batch)
            finally:
                self._writing = []

    async def _commit(self, batch: list[tuple[T, asyncio.Future[None]]]) -> None:
        started = time.perf_counter()
        try:
            async with self._transaction() as db:
                await self._write(db, [item for item, _ in batch])
        except Exception as exc:
            self._timed(started, failed=True)
            if len(batch) > 1:  # one bad item (its conversation deleted) must not fail all
                log.warning(
                    "a batch of %d %s failed (%s); one at a time", len(batch), self._what, _why(exc)
                )
                for one in batch:
                    await self._commit([one])
                return
            # The item's transaction failed: none of it is stored. Its answer is told.
            log.error("%d %s could not be stored: %s", len(batch), self._what, _why(exc))
            for _, future in batch:
                if not future.done():
                    future.set_exception(StoreUnavailable(self._failed))
            return
        except BaseException:  # cancelled: their answers must not wait for ever
            for _, future in batch:
                if not future.done():
                    future.set_exception(StoreUnavailable(self._failed))
            raise
        self._timed(started, failed=False)
        for _, future in batch:
            if not future.done():
                future.set_result(None)

    def _timed(self, started: float, *, failed: bool) -> None:
        if self.report is not None:
            self.report(self.operation, time.perf_counter() - started, failed)


def _retrieved(future: asyncio.Future[None]) -> None:
    """A failure is reported by the answer that waits for it, and logged here once per
    batch: not again as "exception never retrieved" when no answer is left to wait."""
    if not future.cancelled():
        future.exception()


def _why(exc: BaseException) -> str:
    return exc.message if isinstance(exc, TypewriterError) else f"{type(exc).__name__}: {exc}"
