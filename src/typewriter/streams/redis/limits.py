"""The per-user limits counted in Redis, so that they hold across every replica.

Without this, ``requests_per_minute`` and ``max_streams_per_user`` were per
replica: behind a load balancer with N replicas a user got N times each. Here
both are one Lua script each, atomic in Redis, so concurrent requests on
different replicas cannot all pass the same check.

- ``tw:lim:r:{key}`` a sorted set, the sliding log of a key's accepted requests
  (member: a random id, score: Redis's clock in ms), trimmed to the window on
  every request and expiring with it: the same exact sliding window as the
  in-process :class:`~typewriter.api.rate_limit.RateLimiter`.
- ``tw:lim:s:{key}`` a sorted set of the key's answers (member: the stream id,
  score: a deadline for an answer whose stream is not created yet). A slot is
  not renewed by anything of its own: it counts while its stream does, read
  from the broker's own keys, so a replica that dies frees its slots when its
  leases lapse, with no heartbeat more. An answer counts while its stream is
  running under a live lease (``tw:running:all``) and not finished
  (``tw:m:{id}``); before its stream exists, until its deadline. The stream is
  marked finished by the very script that appends ``end``, so a client that has
  read ``end`` is never refused for that answer, even before the replica's
  release (a ``ZREM``, sent in the background) arrives.

When Redis cannot be reached (or answers slower than ``redis_timeout``), both
limits fall back to counting in this process, as they did before: each replica
then allows ``requests_per_minute`` and ``max_streams_per_user`` again. Failing
closed instead would turn a Redis outage into an outage of the routes that do
not need Redis (conversations, history, the page), and an ask gets its ``503
broker_unavailable`` anyway, from its stream, which lives in Redis, with nothing
recorded; the limits add no failure of their own. A warning is logged when the
fallback starts and when Redis counts again.

Commands are bounded by ``redis_timeout`` and run shielded in a task of their
own, so a request cancelled meanwhile never cancels a Redis command half-way
(see :mod:`.connection`).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as aioredis

from typewriter.slots import Slot, StreamSlots, too_many_streams
from typewriter.streams.redis.connection import FAILED, retrieve
from typewriter.streams.redis.keys import RUNNING_TTL, Keys

__all__ = ["BROKER_KEYS", "RATE", "SLOTS", "RedisRateLimiter", "RedisSlots"]

log = logging.getLogger(__name__)
T = TypeVar("T")

BROKER_KEYS = Keys("tw")
"""The keys of the brokers ``create_broker`` makes (the default prefix): the slots read
their streams' leases there."""

_NOW_MS = "local t = redis.call('TIME') local now = t[1] * 1000 + math.floor(t[2] / 1000)"

# KEYS: the key's log. ARGV: limit, window ms, a unique member.
# Returns 0 when accepted, else the ms until a request would be.
RATE = f"""
{_NOW_MS}
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return math.max(1, tonumber(oldest[2]) + window - now)
end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], window)
return 0
"""

# KEYS: the key's slots, running. ARGV: limit, pending ms, stream id, meta key prefix, ttl.
# Returns {1, held} when the slot was taken, {0, held} when refused; held counts the
# slots that were live before this one.
SLOTS = f"""
{_NOW_MS}
local held = 0
local slots = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
for i = 1, #slots, 2 do
  local id = slots[i]
  local live
  local finished = redis.call('HGET', ARGV[4] .. id, 'finished')
  if not finished then
    live = tonumber(slots[i + 1]) > now
  elseif finished == '1' then
    live = false
  else
    local lease = redis.call('ZSCORE', KEYS[2], id)
    live = lease and tonumber(lease) > now
  end
  if live then held = held + 1 else redis.call('ZREM', KEYS[1], id) end
end
if held >= tonumber(ARGV[1]) then return {{0, held}} end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return {{1, held}}
"""


async def _bounded(command: Awaitable[T], timeout: float) -> T:
    """Await a Redis command for at most ``timeout`` seconds, without ever cancelling it."""

    async def run() -> T:
        return await command

    task = asyncio.create_task(run())
    task.add_done_callback(retrieve)
    return await asyncio.wait_for(asyncio.shield(task), timeout)


class RedisRateLimiter:
    """``requests_per_minute`` for every replica at once; in this process while Redis
    is away."""

    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        limit: int,
        *,
        fallback: Callable[[str], float],
        timeout: float,
        window: float = 60.0,
    ) -> None:
        self.limit = limit
        self.window = window
        self._prefix = f"{keys.prefix}:lim:r:"
        self._script = redis.register_script(RATE)
        self._timeout = timeout
        self._fallback = fallback  # the in-process limiter's count, while Redis is away
        self._outage = _Outage("requests")

    async def acquire(self, key: str) -> float:
        member = os.urandom(8).hex()
        args: list[str | int] = [self.limit, int(self.window * 1000), member]
        try:
            waited: Any = await _bounded(
                self._script(keys=[self._prefix + key], args=args), self._timeout
            )
        except (*FAILED, TimeoutError) as exc:
            self._outage.failed(exc)
            return self._fallback(key)
        self._outage.ended()
        return int(waited) / 1000


class RedisSlots:
    """``max_streams_per_user`` for every replica at once (see the module's note)."""

    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        limit: int,
        *,
        fallback: StreamSlots,
        lease_ms: int,
        timeout: float,
    ) -> None:
        self._redis = redis
        self._fallback = fallback  # counts in this process while Redis is away
        self._outage = _Outage("answers generating")
        self._keys = keys
        self._limit = limit
        self._lease_ms = lease_ms
        self._timeout = timeout
        self._script = redis.register_script(SLOTS)
        self._held: Counter[str] = Counter()
        self._releases: set[asyncio.Task[Any]] = set()

    def _slots_key(self, key: str) -> str:
        return f"{self._keys.prefix}:lim:s:{key}"

    def held(self, key: str) -> int:
        return self._held[key] + self._fallback.held(key)

    async def take(self, owner: str, key: str | None, stream_id: str) -> Slot:
        if key is None:
            return Slot(owner)
        slots_key = self._slots_key(key)
        args: list[str | int] = [
            self._limit,
            self._lease_ms,
            stream_id,
            self._keys.meta(""),
            RUNNING_TTL,
        ]
        try:
            taken, held = await _bounded(
                self._script(keys=[slots_key, self._keys.running], args=args), self._timeout
            )
        except (*FAILED, TimeoutError) as exc:
            self._outage.failed(exc)
            return await self._fallback.take(owner, key, stream_id)
        self._outage.ended()
        if not taken:
            raise too_many_streams(int(held), self._limit)
        self._held[key] += 1
        return Slot(owner, lambda: self._give_back(key, slots_key, stream_id))

    def _give_back(self, key: str, slots_key: str, stream_id: str) -> None:
        self._held[key] -= 1
        if self._held[key] <= 0:
            del self._held[key]
        # Best effort: a lost ZREM only leaves the slot to the script's own checks.
        task = asyncio.get_running_loop().create_task(self._forget(slots_key, stream_id))
        self._releases.add(task)
        task.add_done_callback(self._releases.discard)

    async def _forget(self, slots_key: str, stream_id: str) -> None:
        try:
            await _bounded(self._redis.zrem(slots_key, stream_id), self._timeout)
        except (*FAILED, TimeoutError) as exc:
            log.debug("slot of %s not released in Redis (%s); it lapses", stream_id, exc)


class _Outage:
    """One warning when counting in Redis starts failing, one when it works again."""

    __slots__ = ("what", "failing")

    def __init__(self, what: str) -> None:
        self.what = what
        self.failing = False

    def failed(self, exc: BaseException) -> None:
        if not self.failing:
            log.warning(
                "cannot count %s in Redis (%s); counting per replica until it is back",
                self.what,
                exc or type(exc).__name__,
            )
        self.failing = True

    def ended(self) -> None:
        if self.failing:
            log.warning("Redis is reachable again; %s are counted there again", self.what)
        self.failing = False
