"""Leases: a running stream belongs to the replica that renews it, and is claimed when it lapses.

``create`` puts the stream in ``tw:running:all`` with a deadline on Redis's
clock; one heartbeat per replica renews the deadlines of all its streams (and
its ``tw:r:{token}`` key saying it lives). Every replica looks for lapsed
deadlines and *claims* them with a script that takes over the lease and the
producer token, so exactly one replica ends each orphan; should it die while
ending one, the lease lapses again and yet another replica claims it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis

from typewriter.errors import BrokerUnavailable
from typewriter.streams.base import Orphan
from typewriter.streams.redis.background import Background
from typewriter.streams.redis.connection import FAILED, entry_of, or_unavailable
from typewriter.streams.redis.full import CLAIM_ANYWAY, HEARTBEAT
from typewriter.streams.redis.keys import CREATE, RUNNING_TTL, Keys
from typewriter.streams.redis.writer import Writer

__all__ = ["Leases"]

log = logging.getLogger(__name__)

_CLAIM_BATCH = 32


class Leases:
    """The leases this replica holds (through its writer's streams) and the claims it makes."""

    def __init__(
        self,
        redis: aioredis.Redis,
        background: Background,
        keys: Keys,
        writer: Writer,
        *,
        token: str,
        lease_ms: int,
        renew_every: float,
    ) -> None:
        self._redis = redis
        self._background = background
        self._keys = keys
        self._writer = writer
        self._token = token
        self._lease_ms = lease_ms
        self._renew_every = renew_every
        self._create_script = redis.register_script(CREATE)
        # Both run when Redis is full (see .full): a heartbeat refused there would let
        # other replicas claim the answers of this one, which is alive.
        self._heartbeat_script = redis.register_script(HEARTBEAT)
        self._claim_script = redis.register_script(CLAIM_ANYWAY)
        self._claim_after = 0.0

    def start(self) -> None:
        self._background.spawn(self._heartbeat())

    async def open(self, stream_id: str, owner: str) -> None:
        """The stream's meta hash, and its first lease (BrokerUnavailable if Redis is away)."""
        await or_unavailable(
            self._create_script(
                keys=[self._keys.meta(stream_id), self._keys.running],
                args=[owner, self._token, self._lease_ms, stream_id, RUNNING_TTL],
            )
        )

    async def close(self, stream_id: str) -> None:
        """Remove a stream that was never written to, lease and meta hash."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zrem(self._keys.running, stream_id)
            pipe.delete(self._keys.meta(stream_id))
            await or_unavailable(pipe.execute())

    async def _heartbeat(self) -> None:
        """Say this replica lives, and renew the lease of every stream it produces."""
        failing = False
        while not self._background.closing.is_set():
            try:
                await self._heartbeat_script(
                    keys=[self._keys.running, self._keys.replica(self._token)],
                    args=[self._lease_ms, *self._writer.held()],
                )
                if failing:
                    log.warning("Redis is reachable again; leases renewed")
                failing = False
            except FAILED as exc:
                if not failing:
                    log.warning("cannot renew leases in Redis: %s", exc)
                failing = True
            await self._background.pause(self._renew_every)

    async def claim(self, started: Callable[[], Awaitable[None]]) -> list[Orphan]:
        """Claim lapsed streams; ``started`` makes sure the broker runs (this replica is
        about to produce them)."""
        loop = asyncio.get_running_loop()
        if loop.time() < self._claim_after:
            return []
        try:
            await started()
            claimed: Any = await self._claim_script(
                keys=[self._keys.running],
                args=[self._token, self._lease_ms, _CLAIM_BATCH, self._keys.prefix],
            )
            orphans = [await self._orphan(raw.decode()) for raw in claimed]
        except (*FAILED, BrokerUnavailable) as exc:
            # Our own view of Redis just failed: the producers' renewals may have failed
            # the same way, so give them one lease period to renew before judging them.
            log.warning("cannot look for lapsed leases: %s", exc)
            self._claim_after = loop.time() + self._lease_ms / 1000
            return []
        return [orphan for orphan in orphans if orphan is not None]

    async def _orphan(self, stream_id: str) -> Orphan | None:
        if self._writer.produces(stream_id):
            # Its lease lapsed while this very replica produces it (a heartbeat late on a
            # busy loop): it is alive, so it is not an orphan. The claim renewed it.
            log.warning("lease of stream %s lapsed while this replica produces it", stream_id)
            return None
        meta: Any = await self._redis.hgetall(self._keys.meta(stream_id))
        if not meta or meta.get(b"finished") == b"1":
            await self._redis.zrem(self._keys.running, stream_id)
            return None
        owner = meta[b"owner"].decode()
        items: Any = await self._redis.xrange(self._keys.stream(stream_id))
        entries = [entry_of(entry_id, fields) for entry_id, fields in items]
        log.warning("stream %s lost its replica; ending it here", stream_id)
        self._writer.produce(stream_id, owner, int(meta[b"last"]))
        return Orphan(stream_id, owner, entries)

    async def live(self, stream_ids: list[str]) -> set[str]:
        """Of these streams, the ones whose lease is held (or not yet claimed)."""
        if not stream_ids:
            return set()
        scores: Any = await or_unavailable(self._redis.zmscore(self._keys.running, stream_ids))
        return {s for s, score in zip(stream_ids, scores, strict=True) if score is not None}
