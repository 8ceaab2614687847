"""The incarnation of Redis's data, and noticing when it was lost.

Redis can lose everything while replicas keep running: ``FLUSHALL``, a restart
without persistence, a failover to an empty replica. Nothing in a stream says
so: a follower reading after entry 57 would wait for a new counter to reach 58,
a producer's next append finds no stream. The key ``tw:epoch`` names the
data's incarnation (made from Redis's clock by whichever script first finds it
missing, so every replica agrees on one value); as Centrifuge's
``StreamPosition.Epoch``, a changed epoch means "what you knew is gone".

One watcher per replica reads it every :data:`CHECK_EVERY` seconds (one ``GET``)
and tells the parts that care: the writer writes again what it produces, the
channel mirrors reset their listeners, the listener counts are said again. A
part that meets a missing key itself asks :meth:`Epoch.check` at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis

from typewriter.streams.redis.background import Background
from typewriter.streams.redis.connection import FAILED
from typewriter.streams.redis.keys import EPOCH, Keys

__all__ = ["CHECK_EVERY", "Epoch"]

log = logging.getLogger(__name__)

CHECK_EVERY = 0.5  # seconds between two reads of the epoch, per replica


class Epoch:
    """This replica's view of the data's epoch: ``known`` and when it last changed."""

    def __init__(self, redis: aioredis.Redis, background: Background, keys: Keys) -> None:
        self._redis = redis
        self._background = background
        self._script = redis.register_script(EPOCH)
        self._keys = keys
        self.known: int | None = None
        self.lost_at: float | None = None  # event loop time the last change was seen
        self._on_change: list[Callable[[int], None]] = []
        self._checking: asyncio.Task[bool] | None = None

    def on_change(self, callback: Callable[[int], None]) -> None:
        """Call ``callback(new epoch)`` whenever the epoch is seen to change."""
        self._on_change.append(callback)

    def start(self) -> None:
        self._background.spawn(self._watch())

    async def current(self) -> int:
        """The epoch in Redis now (made if missing); a change is handled before it returns."""
        value: Any = await self._script(keys=[self._keys.epoch])
        epoch = int(value)
        self.seen(epoch)
        return epoch

    async def check(self) -> bool:
        """Read the epoch now (one read however many callers ask at once); True if it
        changed since it was last read. Redis unreachable: False (nothing is known)."""
        if self._checking is None or self._checking.done():
            self._checking = asyncio.create_task(self._check())
        return await asyncio.shield(self._checking)

    def lost_within(self, seconds: float) -> bool:
        """Whether the data was found lost less than ``seconds`` ago."""
        return (
            self.lost_at is not None and asyncio.get_running_loop().time() - self.lost_at < seconds
        )

    async def _check(self) -> bool:
        before = self.known
        try:
            await self.current()
        except FAILED:
            return False
        return before is not None and self.known != before

    def seen(self, epoch: int) -> None:
        """The epoch as just read from Redis (by this watcher or another part)."""
        before, self.known = self.known, epoch
        if before is None or before == epoch:
            return
        self.lost_at = asyncio.get_running_loop().time()
        log.warning(
            "Redis lost its data (epoch %d, now %d): restoring the answers produced here",
            before,
            epoch,
        )
        for callback in self._on_change:
            try:
                callback(epoch)
            except Exception:  # one part failing must not keep the others uninformed
                log.exception("reacting to a new Redis epoch failed")

    async def _watch(self) -> None:
        while not self._background.closing.is_set():
            await self.check()
            await self._background.pause(CHECK_EVERY)
