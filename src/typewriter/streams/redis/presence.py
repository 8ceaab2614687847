"""Who listens to a stream, across replicas: the grace period of an answer.

Each replica counts its own listeners of a stream in one field of the hash
``tw:l:{id}`` (by replica token). Only replicas whose heartbeat key exists
count, so listeners that were on a replica which died no longer hold an answer
open. One poller task per replica reads the counts of every stream it
generates, and the cancel flags with them (:mod:`.cancels`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import redis.asyncio as aioredis

from typewriter.errors import BrokerUnavailable
from typewriter.streams.redis.background import Background
from typewriter.streams.redis.cancels import Cancels
from typewriter.streams.redis.connection import FAILED, or_unavailable
from typewriter.streams.redis.full import COUNT_ANYWAY
from typewriter.streams.redis.keys import RUNNING_TTL, Keys

__all__ = ["Listeners"]

log = logging.getLogger(__name__)


class _Abandonment:
    __slots__ = ("grace", "alone_since", "event")

    def __init__(self, grace: float) -> None:
        self.grace = grace
        self.alone_since: float | None = None
        self.event = asyncio.Event()


class Listeners:
    """This replica's listener counts in Redis, and its watches for abandoned streams."""

    def __init__(
        self,
        redis: aioredis.Redis,
        background: Background,
        keys: Keys,
        cancels: Cancels,
        token: str,
    ) -> None:
        self._redis = redis
        self._background = background
        self._keys = keys
        self._cancels = cancels
        self._token = token
        self._abandonment: dict[str, _Abandonment] = {}
        self._task: asyncio.Task[None] | None = None
        self._count_script = redis.register_script(COUNT_ANYWAY)

    async def arrived(self, stream_id: str) -> None:
        """One more listener here (BrokerUnavailable if Redis is away: it is refused)."""
        await self._count(stream_id, 1)

    async def left(self, stream_id: str) -> None:
        """One fewer; if Redis is away, this replica's heartbeat lapsing discounts it."""
        with contextlib.suppress(BrokerUnavailable):
            await self._count(stream_id, -1)

    async def _count(self, stream_id: str, change: int) -> None:
        await or_unavailable(
            self._count_script(
                keys=[self._keys.listeners(stream_id)], args=[self._token, change, RUNNING_TTL]
            )
        )

    async def wait_abandoned(self, stream_id: str, grace: float) -> None:
        """Waits on a local event that one poller task (``_watch``) sets."""
        watch = _Abandonment(grace)
        self._abandonment[stream_id] = watch
        if self._task is None or self._task.done():
            self._task = self._background.spawn(self._watch())
        try:
            await watch.event.wait()
        finally:
            self._abandonment.pop(stream_id, None)

    async def _watch(self) -> None:
        """One loop for every running generation: listener counts and cancel flags."""
        loop = asyncio.get_running_loop()
        while self._abandonment and not self._background.closing.is_set():
            watched = list(self._abandonment.items())
            try:
                counts, cancelled = await self._listeners_and_cancels([s for s, _ in watched])
            except FAILED as exc:
                log.warning("listener counts unavailable: %s", exc)
                counts, cancelled = [1] * len(watched), []  # unknown: assume someone listens
            for stream_id in cancelled:
                self._cancels.mark(stream_id)
            now = loop.time()
            for (_, watch), count in zip(watched, counts, strict=True):
                if count > 0:
                    watch.alone_since = None
                elif watch.alone_since is None:
                    watch.alone_since = now
                elif now - watch.alone_since >= watch.grace:
                    watch.event.set()
            step = min([max(w.grace / 4, 0.05) for _, w in watched] + [1.0])
            await self._background.pause(step)

    async def _listeners_and_cancels(self, stream_ids: list[str]) -> tuple[list[int], list[str]]:
        """Listeners per stream on live replicas only, and which streams were cancelled."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for stream_id in stream_ids:
                pipe.hgetall(self._keys.listeners(stream_id))
                pipe.exists(self._keys.cancel_flag(stream_id))
            replies: list[Any] = await pipe.execute()
        per_stream: list[dict[str, int]] = [
            {token.decode(): int(count) for token, count in reply.items() if int(count) > 0}
            for reply in replies[0::2]
        ]
        others = sorted({t for counts in per_stream for t in counts} - {self._token})
        alive = {self._token}
        if others:
            found: Any = await self._redis.mget([self._keys.replica(t) for t in others])
            alive.update(t for t, value in zip(others, found, strict=True) if value)
        totals = [sum(c for t, c in counts.items() if t in alive) for counts in per_stream]
        cancelled = [s for s, flag in zip(stream_ids, replies[1::2], strict=True) if flag]
        return totals, cancelled
