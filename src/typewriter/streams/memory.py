"""The in-process broker: the embedded default, and the reference for the others.

Streams are :class:`~typewriter.streams.local.LocalLog`s in a dict on this
process's event loop; a slow listener costs nothing extra because it reads the
shared log from its own cursor.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from typewriter.errors import InvalidLastEventId, StreamExpired, StreamNotFound
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
from typewriter.streams.local import (
    LocalChannel,
    LocalChannelSubscription,
    LocalLog,
    LocalSubscription,
)

__all__ = ["MemoryBroker"]


class _Stream(LocalLog):
    __slots__ = (
        "stream_id",
        "owner",
        "channel",
        "listeners",
        "cancel_requested",
        "attached",
        "detached",
    )

    def __init__(self, stream_id: str, owner: str, channel: _Channel) -> None:
        super().__init__()
        self.stream_id = stream_id
        self.owner = owner
        self.channel = channel
        self.listeners = 0
        self.cancel_requested = asyncio.Event()
        self.attached = asyncio.Event()
        self.detached = asyncio.Event()
        self.detached.set()


class _Channel(LocalChannel):
    """A user's channel, numbered here: ``last`` is the cursor of its newest event."""

    __slots__ = ("last",)

    def __init__(self, window: int, epoch: int) -> None:
        super().__init__(window, epoch)
        self.last = 0

    def add(self, stream_id: str, seq: int, event: str, data: str) -> None:
        self.last += 1
        self.entries.append((self.last, stream_id, seq, event, data))
        self.notify()


class MemoryBroker(Broker):
    """Streams in a dict on this process's event loop.

    ``retention`` is how long a finished stream stays readable; after it the
    stream answers "expired" (410) for ``tombstone_ttl`` more seconds, then
    "not found". ``channel_window`` bounds each user's channel backlog.
    """

    def __init__(
        self,
        *,
        retention: float = 600.0,
        tombstone_ttl: float = 86400.0,
        channel_window: int = 10_000,
    ) -> None:
        self.retention = retention
        self.tombstone_ttl = tombstone_ttl
        self.channel_window = channel_window
        self._streams: dict[str, _Stream] = {}
        self._expired: set[str] = set()
        self._channels: dict[str, _Channel] = {}
        self._timers: set[asyncio.TimerHandle] = set()
        # This process's incarnation: the cursors a restarted server is given back reset.
        self._epoch = int(time.time() * 1000)

    # -- producing -------------------------------------------------------------

    async def create(self, owner: str, stream_id: str | None = None) -> str:
        stream_id = stream_id or new_id("st")
        self._streams[stream_id] = _Stream(stream_id, owner, self._channel(owner))
        return stream_id

    async def append(self, stream_id: str, event: str, data: str) -> int:
        stream = self._streams[stream_id]
        if stream.finished:
            raise RuntimeError(f"stream {stream_id} is finished; nothing can be appended")
        seq = len(stream.entries) + 1
        stream.push(encode_entry(seq, event, data))
        stream.channel.add(stream_id, seq, event, data)
        return seq

    async def finish(self, stream_id: str, data: str) -> int:
        seq = await self.append(stream_id, TERMINAL_EVENT, data)
        stream = self._streams[stream_id]
        stream.finished = True
        stream.notify()
        self._later(self.retention, self._expire, stream_id)
        return seq

    async def discard(self, stream_id: str) -> None:
        self._streams.pop(stream_id, None)

    def _channel(self, owner: str) -> _Channel:
        channel = self._channels.get(owner)
        if channel is None:
            channel = self._channels[owner] = _Channel(self.channel_window, self._epoch)
        return channel

    # -- retention ---------------------------------------------------------------

    def _later(self, delay: float, callback: Callable[[str], None], stream_id: str) -> None:
        loop = asyncio.get_running_loop()

        def run() -> None:
            self._timers.discard(handle)
            callback(stream_id)

        handle = loop.call_later(delay, run)
        self._timers.add(handle)

    def _expire(self, stream_id: str) -> None:
        if self._streams.pop(stream_id, None) is not None:
            self._expired.add(stream_id)
            self._later(self.tombstone_ttl, self._forget, stream_id)

    def _forget(self, stream_id: str) -> None:
        self._expired.discard(stream_id)

    def _get(self, stream_id: str, owner: str) -> _Stream:
        stream = self._streams.get(stream_id)
        if stream is None or stream.owner != owner:
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
