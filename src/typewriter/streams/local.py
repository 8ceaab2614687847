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
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TypeAlias

from typewriter import events
from typewriter.events import channel_data
from typewriter.streams.base import ChannelSubscription, Entry, Subscription, encode_entry
from typewriter.wakeups import wakeups

__all__ = [
    "MAX_BATCH",
    "ChannelEntry",
    "Feed",
    "LocalChannel",
    "LocalChannelSubscription",
    "LocalLog",
    "LocalSubscription",
    "resolve",
]

# A listener catching up gets at most this many entries per write, so its
# write buffer stays small however far behind it is.
MAX_BATCH = 512
# Listeners' deadlines (their heartbeats) due within the same slot share one loop timer:
# ten thousand idle listeners hold a few hundred timers, not ten thousand. A heartbeat
# comes at most this much late.
DEADLINE_RESOLUTION = 0.02

ChannelEntry: TypeAlias = tuple[int, str, int, str, str]
"""One event of a user's channel: ``(cursor, stream_id, seq, event, data)``.

A reference to the stream's event, not its encoding: most channels have no
listener, so the channel's data is made when a listener reads, not on every
append. A plain tuple for the reason :data:`~typewriter.streams.base.Entry` is
one: the garbage collector does not track it.
"""


class Feed(ABC):
    """What a listener waits on: a log's waiting futures, and whether it ended."""

    __slots__ = ("waiters", "finished")

    def __init__(self) -> None:
        self.waiters: set[asyncio.Future[None]] = set()
        self.finished = False

    @abstractmethod
    def after(self, cursor: int) -> list[Entry]:
        """Up to :data:`MAX_BATCH` entries after ``cursor``, encoded for the wire."""

    def notify(self) -> None:
        if self.waiters:
            waiters, self.waiters = self.waiters, set()
            for waiter in waiters:
                resolve(waiter)


class LocalLog(Feed):
    """A stream's entries, numbered from 1 with no gap."""

    __slots__ = ("entries",)

    def __init__(self) -> None:
        super().__init__()
        self.entries: list[Entry] = []

    def push(self, entry: Entry) -> None:
        self.entries.append(entry)
        self.notify()

    def after(self, cursor: int) -> list[Entry]:
        entries = self.entries
        if not entries:
            return []
        start = max(cursor - entries[0][0] + 1, 0)
        return entries[start : start + MAX_BATCH]


class LocalChannel(Feed):
    """A user's channel: a bounded window of the events of all their streams.

    The channel has its own numbering (the cursor); each event keeps the
    number it has in its stream. A listener reads the data that
    :func:`typewriter.events.channel_data` makes of it. Cursors are numbered
    within an ``epoch`` (an incarnation of the channel's store): clients see
    ``{epoch}-{n}``. :meth:`switch` moves a mirror to a new epoch, and its
    listeners get a ``reset``.
    """

    __slots__ = ("entries", "epoch", "era", "floor")

    def __init__(self, window: int, epoch: int) -> None:
        super().__init__()
        self.entries: deque[ChannelEntry] = deque(maxlen=window)
        self.epoch = epoch
        self.era = 0  # how many times the epoch switched: older cursors cannot go on
        self.floor = 0  # the cursor the entries follow on from

    def first_cursor(self) -> int:
        return self.entries[0][0] if self.entries else self.floor + 1

    def last_cursor(self) -> int:
        return self.entries[-1][0] if self.entries else self.floor

    def switch(self, epoch: int, floor: int) -> None:
        """From now on, the entries of ``epoch`` after ``floor``; the old ones are gone."""
        self.entries.clear()
        self.epoch = epoch
        self.floor = floor
        self.era += 1
        self.notify()

    def after(self, cursor: int) -> list[Entry]:
        entries = self.entries
        if not entries:
            return []
        start = max(cursor - entries[0][0] + 1, 0)
        epoch = self.epoch
        return [
            encode_entry(
                at, event, channel_data(stream_id, seq, event, data), cursor=f"{epoch}-{at}"
            )
            for at, stream_id, seq, event, data in itertools.islice(
                entries, start, start + MAX_BATCH
            )
        ]


class LocalSubscription(Subscription):
    """A listener's cursor on a local log; ``on_close`` lets the broker count listeners."""

    __slots__ = ("_log", "_cursor", "_waiter", "_on_close", "_closed", "_armed", "_timer_at")

    def __init__(
        self, log: Feed, cursor: int, on_close: Callable[[], Awaitable[None]] | None = None
    ) -> None:
        self._log = log
        self._cursor = cursor
        self._waiter: asyncio.Future[None] | None = None
        self._on_close = on_close
        self._closed = False
        self._armed = False  # a wake-up is due at _timer_at
        self._timer_at = 0.0

    @property
    def cursor(self) -> int:
        return self._cursor

    def _pending(self) -> list[Entry]:
        batch = self._log.after(self._cursor)
        if batch:
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
        if not self._armed or self._timer_at != deadline:
            wakeups(DEADLINE_RESOLUTION).call_at(deadline, self._deadline_passed)
            self._armed = True
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
        # Closed, or a later deadline replaced this one (its own wake-up will come); one
        # slot of slack, so that a timer the loop fires a hair early is never lost.
        if self._closed or asyncio.get_running_loop().time() + DEADLINE_RESOLUTION < self._timer_at:
            return
        self._armed = False
        self.wake()

    def wake(self) -> None:
        if self._waiter is not None:
            resolve(self._waiter)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.wake()  # a pending wake-up finds it closed and does nothing
        if self._on_close is not None:
            await self._on_close()


class LocalChannelSubscription(LocalSubscription, ChannelSubscription):
    """A cursor on a channel: a ``reset`` entry instead of any gap.

    A listener gets one when it starts from a cursor that cannot be resumed
    (``reset``, see :func:`~typewriter.streams.base.channel_start`), when its
    channel switched epoch, and when it fell behind the kept window while
    connected; it then goes on from where the reset puts it.
    """

    __slots__ = ("_channel", "_era", "_epoch", "_reset")

    def __init__(
        self,
        channel: LocalChannel,
        cursor: int,
        on_close: Callable[[], Awaitable[None]] | None = None,
        reset: str | None = None,
    ) -> None:
        super().__init__(channel, cursor, on_close)
        self._channel = channel
        self._era = channel.era
        self._epoch = channel.epoch
        self._reset = reset

    @property
    def position(self) -> str:
        return f"{self._epoch}-{self._cursor}"

    def _pending(self) -> list[Entry]:
        channel = self._channel
        reason, self._reset = self._reset, None
        if channel.era != self._era:
            self._era, self._epoch, self._cursor = channel.era, channel.epoch, channel.floor
            reason = "epoch"
        elif self._cursor < channel.first_cursor() - 1:
            self._cursor = channel.last_cursor()
            reason = "window"
        if reason is None:
            return super()._pending()
        reset = events.Reset(self.position, reason)
        return [encode_entry(self._cursor, reset.name, events.encode(reset), self.position)]


def resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
