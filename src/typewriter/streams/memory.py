"""The in-process broker: the embedded default, and the reference for the others.

Streams are :class:`~typewriter.streams.local.LocalLog`s in a dict on this
process's event loop; a slow listener costs nothing extra because it reads the
shared log from its own cursor. What they hold is counted by a
:class:`~typewriter.streams.budget.RetainedBudget`: past it, finished streams are
dropped before their time, oldest first, exactly as if they had expired.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable

from typewriter import events
from typewriter.errors import (
    InvalidLastEventId,
    StreamExpired,
    StreamNotFound,
    TypewriterError,
)
from typewriter.ids import new_id
from typewriter.streams.base import (
    TERMINAL_EVENT,
    Broker,
    ChannelSubscription,
    StreamInfo,
    Subscription,
    channel_start,
    encode_entry,
)
from typewriter.streams.budget import (
    CHANNEL_ENTRY_OVERHEAD,
    ENTRY_OVERHEAD,
    INT_BYTES,
    SMALL_INT,
    STREAM_OVERHEAD,
    Account,
    OverBudget,
    RetainedBudget,
    text_cost,
)
from typewriter.streams.local import (
    LocalChannel,
    LocalChannelSubscription,
    LocalLog,
    LocalSubscription,
)

__all__ = ["MemoryBroker"]

_TEXT_EVENTS = frozenset({events.Delta.name, events.Reasoning.name, events.ToolCall.name})
"""Events the budget may refuse: what the model said. An answer's frame (start, error,
end) is always kept, or a stream could be left without its end."""


class _Stream(LocalLog):
    __slots__ = (
        "stream_id",
        "owner",
        "channel",
        "listeners",
        "cancel_requested",
        "attached",
        "detached",
        "account",
        "expiry",
        "text_bytes",
        "last_cursor",
    )

    def __init__(self, stream_id: str, owner: str, channel: _Channel, account: Account) -> None:
        super().__init__()
        self.stream_id = stream_id
        self.owner = owner
        self.channel = channel
        self.account = account
        self.expiry: asyncio.TimerHandle | None = None
        self.text_bytes = 0  # of the data texts its events hold
        self.last_cursor = 0  # where its newest event is on the channel
        self.listeners = 0
        self.cancel_requested = asyncio.Event()
        self.attached = asyncio.Event()
        self.detached = asyncio.Event()
        self.detached.set()


class _Channel(LocalChannel):
    """A user's channel, numbered here: ``last`` is the cursor of its newest event.

    Its window holds at most ``window`` events, and none older than the oldest event
    of a stream that is dropped: the broker trims it as streams go, so the channel of
    a user whose streams are all gone holds nothing.

    Its entries share their data texts with the streams' logs; the texts of a dropped
    stream whose events are still in the window stay alive with them. They are counted
    on the channel (``held``: the cursor of the stream's last event, and their bytes)
    until the window has moved past that event.
    """

    __slots__ = ("last", "account", "held")

    def __init__(self, window: int, epoch: int, account: Account) -> None:
        super().__init__(window, epoch)
        self.last = 0
        self.account = account
        self.held: deque[tuple[int, int]] = deque()

    def first_cursor(self) -> int:
        return self.entries[0][0] if self.entries else self.last + 1

    def last_cursor(self) -> int:
        return self.last  # also when the budget trimmed every entry away

    def add(self, stream_id: str, seq: int, event: str, data: str) -> None:
        self.last += 1
        self.entries.append((self.last, stream_id, seq, event, data))
        self.notify()


class MemoryBroker(Broker):
    """Streams in a dict on this process's event loop.

    ``retention`` is how long a finished stream stays readable; after it the
    stream answers "expired" (410) for ``tombstone_ttl`` more seconds, then
    "not found". ``channel_window`` bounds each user's channel backlog.
    ``max_retained_bytes`` and ``max_retained_bytes_per_user`` bound the memory
    the streams and channels hold (see :mod:`typewriter.streams.budget`).
    """

    def __init__(
        self,
        *,
        retention: float = 600.0,
        tombstone_ttl: float = 86400.0,
        channel_window: int = 10_000,
        max_retained_bytes: int = 256 * 1024 * 1024,
        max_retained_bytes_per_user: int = 32 * 1024 * 1024,
    ) -> None:
        self.retention = retention
        self.tombstone_ttl = tombstone_ttl
        self.channel_window = channel_window
        self.budget = RetainedBudget(max_retained_bytes, max_retained_bytes_per_user)
        self._streams: dict[str, _Stream] = {}
        # Tombstones, in the order they were made: the oldest is the first to be forgotten
        # (one dict entry each, purged as new ones come, rather than a timer each).
        self._expired: OrderedDict[str, float] = OrderedDict()
        self._channels: dict[str, _Channel] = {}
        self._timers: set[asyncio.TimerHandle] = set()
        # This process's incarnation: the cursors a restarted server is given back reset.
        self._epoch = int(time.time() * 1000)

    # -- producing -------------------------------------------------------------

    def admit(self, owner: str) -> None:
        """Refused only once the user's finished streams are dropped: those may pin, through
        the channel's window, the texts of streams dropped before them."""
        while True:
            try:
                self.budget.admit(owner)
                return
            except TypewriterError:
                oldest = self.budget.oldest_finished(owner)
                if oldest is None or not self._drop(oldest):
                    raise
                self.budget.dropped += 1

    async def create(self, owner: str, stream_id: str | None = None) -> str:
        stream_id = stream_id or new_id("st")
        account = self.budget.open(stream_id, owner, STREAM_OVERHEAD)
        self._streams[stream_id] = _Stream(stream_id, owner, self._channel(owner), account)
        return stream_id

    async def append(self, stream_id: str, event: str, data: str) -> int:
        """Append, unless it is text that running answers leave no room for (OverBudget:
        nothing is appended, the generation ends the answer ``length``)."""
        stream = self._streams[stream_id]
        if stream.finished:
            raise RuntimeError(f"stream {stream_id} is finished; nothing can be appended")
        seq = len(stream.entries) + 1
        entry = encode_entry(seq, event, data)
        entry_bytes = ENTRY_OVERHEAD + len(entry[3]) + (INT_BYTES if seq > SMALL_INT else 0)
        text_bytes = text_cost(data)
        budget, account, channel = self.budget, stream.account, stream.channel
        window, entries = self.channel_window, channel.entries
        full = len(entries) >= window  # then the new entry takes the place of the oldest
        if not budget.take(
            account,
            channel.account,
            entry_bytes + text_bytes,
            0 if full else CHANNEL_ENTRY_OVERHEAD,
            refusable=event in _TEXT_EVENTS,
        ):
            raise OverBudget(f"no room for more of stream {stream_id}")
        stream.push(entry)
        stream.text_bytes += text_bytes
        channel.add(stream_id, seq, event, data)  # a full window lets go of its oldest
        stream.last_cursor = channel.last
        if full and channel.held and channel.held[0][0] < channel.first_cursor():
            self._let_go(channel)
        if budget.total > budget.limit or account.share.total > budget.share:
            self._keep_within_budget(stream.owner)
        return seq

    async def finish(self, stream_id: str, data: str) -> int:
        seq = await self.append(stream_id, TERMINAL_EVENT, data)
        stream = self._streams[stream_id]
        stream.finished = True
        stream.notify()
        stream.expiry = self._later(self.retention, self._expire, stream_id)
        self.budget.finish(stream.account)
        self._keep_within_budget(stream.owner)
        return seq

    async def discard(self, stream_id: str) -> None:
        stream = self._streams.pop(stream_id, None)
        if stream is not None:  # created for an ask that failed: it holds nothing now
            self.budget.release(stream.account)

    def _channel(self, owner: str) -> _Channel:
        channel = self._channels.get(owner)
        if channel is None:
            account = self.budget.open(f"channel:{owner}", owner)
            channel = self._channels[owner] = _Channel(self.channel_window, self._epoch, account)
        return channel

    # -- the budget --------------------------------------------------------------

    def _let_go(self, channel: _Channel) -> None:
        """Texts of dropped streams whose events the window has moved past are freed."""
        first = channel.first_cursor()
        freed = 0
        while channel.held and channel.held[0][0] < first:
            freed += channel.held.popleft()[1]
        self.budget.charge(channel.account, -freed)

    def _keep_within_budget(self, owner: str) -> None:
        """Drop finished streams, the user's oldest then anyone's, until within the limits.

        Each stream is dropped once, so this costs O(1) per append, amortized.
        """
        while (victim := self.budget.victim(owner)) is not None:
            if not self._drop(victim):
                break
            self.budget.dropped += 1

    # -- retention ---------------------------------------------------------------

    def _later(
        self, delay: float, callback: Callable[[str], None], stream_id: str
    ) -> asyncio.TimerHandle:
        loop = asyncio.get_running_loop()

        def run() -> None:
            self._timers.discard(handle)
            callback(stream_id)

        handle = loop.call_later(delay, run)
        self._timers.add(handle)
        return handle

    def _expire(self, stream_id: str) -> None:
        self._drop(stream_id)

    def _drop(self, stream_id: str) -> bool:
        """The stream is gone, past its retention or dropped for the budget alike: it
        answers "expired" from now on, and its user's channel lets go of its events."""
        stream = self._streams.pop(stream_id, None)
        if stream is None:
            return False
        self.budget.release(stream.account)
        if stream.expiry is not None:
            stream.expiry.cancel()
            self._timers.discard(stream.expiry)
            stream.expiry = None
        now = asyncio.get_running_loop().time()
        self._forget(now)
        self._expired[stream_id] = now + self.tombstone_ttl
        channel = stream.channel
        entries, trimmed = channel.entries, 0
        while entries and entries[0][1] not in self._streams:
            entries.popleft()
            trimmed += 1
        self.budget.charge(channel.account, -trimmed * CHANNEL_ENTRY_OVERHEAD)
        if entries and stream.last_cursor >= entries[0][0]:  # its texts are still held there
            self.budget.charge(channel.account, stream.text_bytes)
            channel.held.append((stream.last_cursor, stream.text_bytes))
        self._let_go(channel)
        return True

    def _forget(self, now: float) -> None:
        """Tombstones past their time answer "not found" from now on."""
        expired = self._expired
        while expired and next(iter(expired.values())) <= now:
            expired.popitem(last=False)

    def _get(self, stream_id: str, owner: str) -> _Stream:
        stream = self._streams.get(stream_id)
        if stream is None or stream.owner != owner:
            if stream is None and stream_id in self._expired:
                self._forget(asyncio.get_running_loop().time())
            if stream is None and stream_id in self._expired:
                raise StreamExpired(
                    f"stream {stream_id!r} finished and is past its retention period",
                )
            raise StreamNotFound(f"no stream {stream_id!r}")
        return stream

    # -- listening ---------------------------------------------------------------

    async def info(self, stream_id: str, owner: str) -> StreamInfo:
        stream = self._get(stream_id, owner)
        return StreamInfo(stream_id, stream.owner, len(stream.entries), stream.finished)

    async def subscribe(self, stream_id: str, owner: str, after: int) -> Subscription:
        stream = self._get(stream_id, owner)
        if after > len(stream.entries):
            raise InvalidLastEventId(
                f"Last-Event-ID {after} is beyond the last event of stream {stream_id!r} "
                f"(it has reached {len(stream.entries)})",
            )
        stream.listeners += 1
        stream.detached.clear()
        stream.attached.set()
        return LocalSubscription(stream, after, self._listener_left(stream))

    async def subscribe_channel(self, owner: str, after: str | None) -> ChannelSubscription:
        channel = self._channel(owner)
        cursor, reset = channel_start(after, channel.epoch, channel.last, channel.first_cursor())
        return LocalChannelSubscription(channel, cursor, reset=reset)

    # -- control -----------------------------------------------------------------

    @staticmethod
    def _listener_left(stream: _Stream) -> Callable[[], Awaitable[None]]:
        async def left() -> None:
            stream.listeners -= 1
            if stream.listeners == 0:
                stream.attached.clear()
                stream.detached.set()

        return left

    async def cancel(self, stream_id: str, owner: str) -> None:
        self._get(stream_id, owner).cancel_requested.set()

    async def wait_cancelled(self, stream_id: str) -> None:
        await self._streams[stream_id].cancel_requested.wait()

    async def wait_abandoned(self, stream_id: str, grace: float) -> None:
        stream = self._streams[stream_id]
        while True:
            if stream.listeners == 0:
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a
                # cancel that lands as the inner wait completes, and hang here.
                try:
                    async with asyncio.timeout(grace):
                        await stream.attached.wait()
                except TimeoutError:
                    if stream.listeners == 0:
                        return
            else:
                await stream.detached.wait()

    async def live(self, stream_ids: list[str]) -> set[str]:
        running = (self._streams.get(s) for s in stream_ids)
        return {s.stream_id for s in running if s is not None and not s.finished}

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
        for stream in self._streams.values():
            stream.notify()
