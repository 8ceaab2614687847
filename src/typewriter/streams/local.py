"""In-process logs and the cursors that read them: shared by every broker.

The memory broker keeps its streams in these; the Redis broker mirrors the
streams its listeners follow into them, so that N listeners on one replica
cost one Redis read, not N. Everything lives on one event loop, so appends
need no locks: an append puts the pre-encoded entry on the log and resolves
the futures of listeners that were waiting. A listener that is behind finds
its entries already there and never waits at all.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Awaitable, Callable

from typewriter.streams.base import Entry, Subscription, encode_entry

__all__ = ["MAX_BATCH", "LocalChannel", "LocalLog", "LocalSubscription", "channel_entry", "resolve"]

# A listener catching up gets at most this many entries per write, so its
# write buffer stays small however far behind it is.
MAX_BATCH = 512


class LocalLog:
    """Entries plus the futures of listeners waiting for the next one."""

    __slots__ = ("entries", "waiters", "finished")

    def __init__(self) -> None:
        self.entries: list[Entry] = []
        self.waiters: set[asyncio.Future[None]] = set()
        self.finished = False

    def first_seq(self) -> int:
        return self.entries[0][0] if self.entries else 1

    def push(self, entry: Entry) -> None:
        self.entries.append(entry)
        self.notify()

    def notify(self) -> None:
        if self.waiters:
            waiters, self.waiters = self.waiters, set()
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)


class LocalChannel(LocalLog):
    """A user's channel: a bounded window of events of all their streams.

    It holds references, ``(cursor, stream_id, seq, event, data)``, not
    encodings: most channels have no listener, so the encoding is made when a
    listener reads (:func:`channel_entry`), not on every append.
    """

    __slots__ = ("next_cursor",)

    def __init__(self, window: int) -> None:
        super().__init__()
        self.next_cursor = 1
        self.entries = deque(maxlen=window)  # type: ignore[assignment]


def channel_entry(ref: tuple[int, str, int, str, str]) -> Entry:
    cursor, stream_id, seq, event, data = ref
    prefix = f'{{"stream_id":"{stream_id}","seq":{seq}'
    return encode_entry(cursor, event, prefix + ("}" if data == "{}" else "," + data[1:]))


class LocalSubscription(Subscription):
    """A listener's cursor on a local log; ``on_close`` lets the broker count listeners."""

    __slots__ = ("_log", "_cursor", "_waiter", "_on_close", "_closed", "_timer", "_timer_at")

    def __init__(
        self, log: LocalLog, cursor: int, on_close: Callable[[], Awaitable[None]] | None = None
    ) -> None:
        self._log = log
        self._cursor = cursor
        self._waiter: asyncio.Future[None] | None = None
        self._on_close = on_close
        self._closed = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    @property
    def cursor(self) -> int:
        return self._cursor

    def _pending(self) -> list[Entry]:
        entries = self._log.entries
        if not entries:
            return []
        start = max(self._cursor - entries[0][0] + 1, 0)
        if start >= len(entries):
            return []
        stop = start + MAX_BATCH
        if not isinstance(self._log, LocalChannel):
            batch: list[Entry] = entries[start:stop]
        else:
            refs = itertools.islice(entries, start, stop)
            batch = [channel_entry(ref) for ref in refs]  # type: ignore[arg-type]
        self._cursor = batch[-1][0]
        return batch

    async def next(self, deadline: float) -> list[Entry] | None:
        batch = self._pending()
        if batch:
            return batch
        if self._log.finished:
            return None
        loop = asyncio.get_running_loop()
        if deadline <= loop.time():
            return []
        if self._timer is None or self._timer_at != deadline:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = loop.call_at(deadline, self._deadline_passed)
            self._timer_at = deadline
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiter = waiter
        self._log.waiters.add(waiter)
        try:
            await waiter
        finally:
            self._waiter = None
            self._log.waiters.discard(waiter)
        return self._pending()

    def _deadline_passed(self) -> None:
        self._timer = None
        self.wake()

    def wake(self) -> None:
        if self._waiter is not None:
            resolve(self._waiter)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.wake()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._on_close is not None:
            await self._on_close()


def resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
