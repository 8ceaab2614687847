"""Streams mirrored on this replica: one local log per stream, however many listen.

A replica does not read Redis once per listener. Listeners of an answer this
replica generates read what its writer confirmed (:meth:`StreamFollowers.own`);
elsewhere the first local listener of a stream starts one follower (a blocking
``XREAD`` loop) that mirrors it into a :class:`Mirror`, and every local
listener reads that log from its own cursor, as with the memory broker. Each
follower holds one connection of its own pool while it blocks, so a replica
following N streams holds about N connections to Redis (Redis's default limit
is 10,000).

A stream whose keys vanish before its ``end`` was lost with Redis's data, not
expired, if the epoch changed meanwhile (:mod:`.epoch`): the follower then goes
on waiting, and its listeners with it, for the producer to write it back with
the same numbers. Should the producer be gone too, the broker claims the stream
after a lease period and restores it from the mirror (:meth:`StreamFollowers.lost`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis

from typewriter.streams.base import TERMINAL_EVENT, StreamInfo, Subscription
from typewriter.streams.local import LocalLog, LocalSubscription
from typewriter.streams.redis.background import Background
from typewriter.streams.redis.connection import FAILED, entry_of
from typewriter.streams.redis.epoch import Epoch
from typewriter.streams.redis.keys import Keys
from typewriter.streams.redis.reads import OUTAGE_TOLERANCE, read_on

__all__ = ["Mirror", "StreamFollowers"]


class Mirror(LocalLog):
    """A local copy of one Redis stream, filled by one follower task (or by the writer)."""

    __slots__ = ("subscribers", "owner", "epoch", "lost_at")

    def __init__(self, owner: str = "", epoch: int | None = None) -> None:
        super().__init__()
        self.subscribers = 0
        self.owner = owner  # known once a listener was let in: what answers while Redis is away
        self.epoch = epoch  # the data's epoch when following began
        self.lost_at: float | None = None  # when its keys were found lost (event loop time)


class StreamFollowers:
    """The mirrors of this replica, by stream id, and the tasks that fill them."""

    def __init__(
        self,
        redis: aioredis.Redis,
        reads: aioredis.Redis,
        background: Background,
        keys: Keys,
        epoch: Epoch,
        patience: float = OUTAGE_TOLERANCE,
    ) -> None:
        self._redis = redis
        self._patience = patience  # how long listeners wait for a Redis that is away
        self._reads = reads
        self._background = background
        self._keys = keys
        self._epoch = epoch
        self._mirrors: dict[str, Mirror] = {}

    def own(self, stream_id: str, owner: str) -> Mirror:
        """The log of a stream this replica produces: its writer fills it, no ``XREAD``."""
        log = self._mirrors[stream_id] = Mirror(owner)
        return log

    def known(self, stream_id: str, owner: str) -> StreamInfo | None:
        """The stream as this replica mirrors it, if it is ``owner``'s and still running
        here: how a listener who reconnects while Redis is away is let in."""
        mirror = self._mirrors.get(stream_id)
        if mirror is None or mirror.finished or mirror.owner != owner:
            return None
        last = mirror.entries[-1][0] if mirror.entries else 0
        return StreamInfo(stream_id, owner, last, False)

    def subscribe(
        self, stream_id: str, owner: str, after: int, then: Callable[[], Awaitable[None]]
    ) -> Subscription:
        """A cursor on the stream's mirror; ``then`` runs once the listener has left it."""
        mirror = self._mirror(stream_id, owner)
        mirror.subscribers += 1

        async def left() -> None:
            mirror.subscribers -= 1
            if mirror.subscribers == 0 and mirror.finished:
                self.drop(stream_id, mirror)
            await then()

        return LocalSubscription(mirror, after, left)

    def drop(self, stream_id: str, mirror: Mirror) -> None:
        """Forget this mirror (if it is still the stream's): the next listener reads again."""
        if self._mirrors.get(stream_id) is mirror:
            del self._mirrors[stream_id]

    def discard(self, stream_id: str) -> None:
        """Forget a stream this replica created and will not write (see ``own``)."""
        self._mirrors.pop(stream_id, None)

    def close(self) -> None:
        """End every mirror's listeners (their responses close; clients resume elsewhere)."""
        for mirror in self._mirrors.values():
            mirror.finished = True
            mirror.notify()

    def following(self, stream_id: str) -> bool:
        """Whether this replica mirrors the stream and has not seen its end."""
        mirror = self._mirrors.get(stream_id)
        return mirror is not None and not mirror.finished

    def lost(self, for_seconds: float) -> list[tuple[str, Mirror]]:
        """The followed streams that Redis lost at least ``for_seconds`` ago and no producer
        wrote back: their producer is gone too."""
        now = asyncio.get_running_loop().time()
        return [
            (stream_id, mirror)
            for stream_id, mirror in self._mirrors.items()
            if mirror.lost_at is not None and now - mirror.lost_at >= for_seconds
        ]

    def _mirror(self, stream_id: str, owner: str) -> Mirror:
        mirror = self._mirrors.get(stream_id)
        if mirror is None:
            mirror = self._mirrors[stream_id] = Mirror(owner, self._epoch.known)
            self._background.spawn(self._follow(stream_id, mirror))
        return mirror

    async def _follow(self, stream_id: str, mirror: Mirror) -> None:
        """Copy the Redis stream into the mirror until its ``end``."""
        reads = read_on(
            self._reads,
            self._background,
            self._keys.stream(stream_id),
            "0-0",
            lambda: mirror.finished,
            self._patience,
        )
        async with contextlib.aclosing(reads):
            async for items in reads:
                if items:
                    mirror.lost_at = None  # written back, if it was lost
                for entry_id, fields in items:
                    entry = entry_of(entry_id, fields)
                    mirror.entries.append(entry)
                    if entry[1] == TERMINAL_EVENT:
                        mirror.finished = True
                mirror.notify()
                if not items and await self._expired(stream_id, mirror):
                    break  # expired under us: end the listeners cleanly
        mirror.finished = True
        mirror.notify()
        if mirror.subscribers == 0 or not mirror.entries or mirror.entries[-1][1] != TERMINAL_EVENT:
            self.drop(stream_id, mirror)  # nobody left, or broken: the next one re-reads

    async def _expired(self, stream_id: str, mirror: Mirror) -> bool:
        """Whether the stream's keys are gone for good (it expired): not when Redis lost
        them (the epoch changed since following began), then the mirror waits."""
        try:
            exists: Any = await self._redis.exists(self._keys.meta(stream_id))
            if exists:
                mirror.lost_at = None
                return False
            await self._epoch.check()
        except FAILED:
            return False  # not known: the next read finds out
        if mirror.epoch is not None and self._epoch.known == mirror.epoch:
            return True
        if mirror.lost_at is None:
            mirror.lost_at = asyncio.get_running_loop().time()
        return False
