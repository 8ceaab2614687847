"""Users' channels mirrored on this replica: one follower per user, however many tabs listen.

Channel entry ids are ``{epoch}-{n}`` (see :mod:`.keys`), which is also the
cursor clients get. A follower reads after its last id; when Redis lost its
data, the first entry of the new epoch has a greater id, so the follower sees
it at once and switches its mirror, whose listeners get a ``reset``. Should
Redis's clock have gone back (a failover), the epoch watcher's word does the
same.
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis

from typewriter.streams.base import ChannelSubscription, channel_start
from typewriter.streams.local import LocalChannel, LocalChannelSubscription
from typewriter.streams.redis.background import Background
from typewriter.streams.redis.connection import or_unavailable
from typewriter.streams.redis.epoch import Epoch
from typewriter.streams.redis.keys import CHANNEL_HEAD, Keys
from typewriter.streams.redis.reads import OUTAGE_TOLERANCE, read_on

__all__ = ["ChannelFollowers"]


class _ChannelMirror(LocalChannel):
    """A user's channel as seen from this replica: from cursor ``start`` of ``epoch`` on."""

    __slots__ = ("start", "subscribers", "stopped")

    def __init__(self, window: int, epoch: int, start: int) -> None:
        super().__init__(window, epoch)
        self.start = start
        self.floor = start
        self.subscribers = 0
        self.stopped = asyncio.Event()


def _id_of(entry_id: bytes) -> tuple[int, int]:
    epoch, _, n = entry_id.partition(b"-")
    return int(epoch), int(n)


class ChannelFollowers:
    """The channel mirrors of this replica, by owner, and the tasks that fill them."""

    def __init__(
        self,
        redis: aioredis.Redis,
        reads: aioredis.Redis,
        background: Background,
        keys: Keys,
        window: int,
        epoch: Epoch,
        patience: float = OUTAGE_TOLERANCE,
    ) -> None:
        self._redis = redis
        self._patience = patience  # how long listeners wait for a Redis that is away
        self._reads = reads
        self._background = background
        self._keys = keys
        self._window = window
        self._epoch = epoch
        self._head = redis.register_script(CHANNEL_HEAD)
        self._channels: dict[str, _ChannelMirror] = {}
        epoch.on_change(self._epoch_changed)

    async def subscribe(self, owner: str, after: str | None) -> ChannelSubscription:
        """See :meth:`typewriter.streams.base.UserChannel.subscribe_channel`."""
        key = self._keys.channel(owner)
        head: Any = await or_unavailable(
            self._head(keys=[self._keys.epoch, self._keys.channel_counter(owner), key])
        )
        epoch, last = int(head[0]), int(head[1])
        self._epoch.seen(epoch)
        first = _id_of(head[2])[1] if head[2] else last + 1
        cursor, reset = channel_start(after, epoch, last, first)
        channel = self._channels.get(owner)
        if channel is None or channel.finished or channel.epoch != epoch or cursor < channel.start:
            # One follower per user and replica, however many tabs listen; a listener
            # resuming from before the shared one's start gets a follower of its own.
            fresh = _ChannelMirror(self._window, epoch, cursor)
            if channel is None or channel.finished or channel.epoch != epoch:
                self._channels[owner] = fresh
            channel = fresh
            self._background.spawn(self._follow(key, channel))
        channel.subscribers += 1
        shared = channel

        async def stop() -> None:
            shared.subscribers -= 1
            if shared.subscribers == 0:
                shared.stopped.set()  # the follower sees it within one blocking read
                if self._channels.get(owner) is shared:
                    del self._channels[owner]

        return LocalChannelSubscription(channel, cursor, stop, reset=reset)

    def _epoch_changed(self, epoch: int) -> None:
        """Wake the followers: each one whose mirror is of another epoch switches."""
        for channel in self._channels.values():
            channel.notify()

    def _stale(self, channel: _ChannelMirror) -> bool:
        known = self._epoch.known
        return known is not None and known != channel.epoch

    async def _follow(self, key: str, channel: _ChannelMirror) -> None:
        stopped = channel.stopped
        while True:
            reads = read_on(
                self._reads,
                self._background,
                key,
                f"{channel.epoch}-{channel.last_cursor()}",
                lambda: stopped.is_set() or self._stale(channel),
                self._patience,
            )
            async for items in reads:
                for entry_id, f in items:
                    epoch, n = _id_of(entry_id)
                    if epoch != channel.epoch:
                        self._epoch.seen(epoch)  # a newer epoch's entry: the data was lost
                        channel.switch(epoch, n - 1)  # its listeners get a reset
                    channel.entries.append(
                        (n, f[b"i"].decode(), int(f[b"q"]), f[b"e"].decode(), f[b"d"].decode())
                    )
                channel.notify()
            if stopped.is_set() or self._background.closing.is_set() or not self._stale(channel):
                break
            known = self._epoch.known
            assert known is not None
            channel.switch(known, 0)  # read the new epoch's channel from its start
        channel.finished = True  # the listener's response ends; it resumes by cursor
        channel.notify()
