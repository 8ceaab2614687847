"""Users' channels mirrored on this replica: one follower per user, however many tabs listen."""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis

from typewriter.streams.base import Subscription, channel_cursor, refuse_trimmed
from typewriter.streams.local import LocalChannel, LocalSubscription
from typewriter.streams.redis.background import Background
from typewriter.streams.redis.connection import or_unavailable, seq_of
from typewriter.streams.redis.keys import Keys
from typewriter.streams.redis.reads import OUTAGE_TOLERANCE, read_on

__all__ = ["ChannelFollowers"]


class _ChannelMirror(LocalChannel):
    """A user's channel as seen from this replica: from cursor ``start`` on."""

    __slots__ = ("start", "subscribers", "stopped")

    def __init__(self, window: int, start: int) -> None:
        super().__init__(window)
        self.start = start
        self.subscribers = 0
        self.stopped = asyncio.Event()


class ChannelFollowers:
    """The channel mirrors of this replica, by owner, and the tasks that fill them."""

    def __init__(
        self,
        redis: aioredis.Redis,
        reads: aioredis.Redis,
        background: Background,
        keys: Keys,
        window: int,
        patience: float = OUTAGE_TOLERANCE,
    ) -> None:
        self._redis = redis
        self._patience = patience  # how long listeners wait for a Redis that is away
        self._reads = reads
        self._background = background
        self._keys = keys
        self._window = window
        self._channels: dict[str, _ChannelMirror] = {}

    async def subscribe(self, owner: str, after: str | None) -> Subscription:
        """See :meth:`typewriter.streams.base.UserChannel.subscribe_channel`."""
        stored: Any = await or_unavailable(self._redis.get(self._keys.channel_counter(owner)))
        last = int(stored or 0)
        cursor = channel_cursor(after, last)
        key = self._keys.channel(owner)
        if after is not None and cursor < last:  # only then can the window have moved past it
            first: Any = await or_unavailable(self._redis.xrange(key, count=1))
            refuse_trimmed(after, cursor, seq_of(first[0][0]) if first else last + 1)
        channel = self._channels.get(owner)
        if channel is None or channel.finished or cursor < channel.start:
            # One follower per user and replica, however many tabs listen; a listener
            # resuming from before the shared one's start gets a follower of its own.
            fresh = _ChannelMirror(self._window, cursor)
            if channel is None or channel.finished:
                self._channels[owner] = fresh
            channel = fresh
            self._background.spawn(self._follow(key, channel, cursor, channel.stopped))
        channel.subscribers += 1
        shared = channel

        async def stop() -> None:
            shared.subscribers -= 1
            if shared.subscribers == 0:
                shared.stopped.set()  # the follower sees it within one blocking read
                if self._channels.get(owner) is shared:
                    del self._channels[owner]

        return LocalSubscription(channel, cursor, stop)

    async def _follow(
        self, key: str, channel: _ChannelMirror, cursor: int, stopped: asyncio.Event
    ) -> None:
        reads = read_on(
            self._reads, self._background, key, f"0-{cursor}", stopped.is_set, self._patience
        )
        async for items in reads:
            for entry_id, f in items:
                channel.entries.append(
                    (
                        seq_of(entry_id),
                        f[b"i"].decode(),
                        int(f[b"q"]),
                        f[b"e"].decode(),
                        f[b"d"].decode(),
                    )
                )
            channel.notify()
        channel.finished = True  # the listener's response ends; it resumes by cursor
        channel.notify()
