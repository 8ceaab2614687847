"""The request rate limit: ``requests_per_minute`` per user, or with auth off per client.

The rate limit is a FastAPI dependency (:func:`enforce_rate_limit`) rather than
a middleware because it needs to know who is calling, which only the auth
dependency knows: it comes after it in the routers' dependency list, and counts
under :func:`~.limit_key.limit_key` (the user; with auth off the client's
address, and nobody for a client straight from loopback unless
``limit_loopback``). Its state belongs to one app (``app.state.rate_limiter``,
or the gateway's), so two apps in one process never share counts.

Routers that keep an answer going (following a stream, the user's channel,
Stop) do not depend on it: none of them starts work, and refusing them makes
things worse. A browser's EventSource gives up for good on any non-200 answer
(it never reads Retry-After), so a refused reconnect loses an answer already
being paid for, and a refused Stop keeps the model generating.

:class:`RateLimiter` counts in this process. With the Redis broker the gateway
counts in Redis instead (``streams.redis.limits``), so the limit holds across
all replicas, at the cost of one round trip per request.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

from fastapi import FastAPI
from starlette.requests import Request

from typewriter.errors import TooManyRequests

from .limit_key import limit_key

__all__ = ["RateLimiter", "RequestLimiter", "enforce_rate_limit", "rate_limiter"]


class RequestLimiter(Protocol):
    """Counts requests per key; :meth:`acquire` is ``0.0`` when accepted, else the wait."""

    limit: int
    window: float

    async def acquire(self, key: str) -> float: ...


class RateLimiter:
    """At most ``limit`` requests per key in any ``window`` seconds: a sliding log.

    Each key has the times of their accepted requests within the last window
    (at most ``limit`` of them), so the limit holds over *every* window, not
    only aligned minutes, and the wait it answers is exact: until the oldest
    of those times leaves the window. A refused request is not counted, so a
    client that retries when told is accepted then.

    Memory is bounded by the users active in the last window: a user whose
    newest request is older than the window is forgotten, swept once per window
    (so the sweep costs O(users) per window, not per request).
    """

    def __init__(
        self, limit: int, window: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if limit < 1 or window <= 0:
            raise ValueError(f"a rate limit needs limit >= 1 and window > 0, not {limit}/{window}")
        self.limit = limit
        self.window = window
        self._clock = clock
        self._times: dict[str, deque[float]] = {}
        self._next_sweep = clock() + window

    @property
    def users(self) -> int:
        """Users currently remembered (for tests and metrics)."""
        return len(self._times)

    def hit(self, user: str) -> float:
        """Count one request of ``user``: ``0.0`` if accepted, else the seconds until
        one is (and the request is not counted)."""
        now = self._clock()
        if now >= self._next_sweep:
            self._sweep(now)
        times = self._times.get(user)
        if times is None:
            times = self._times[user] = deque(maxlen=self.limit)
        horizon = now - self.window
        while times and times[0] <= horizon:
            times.popleft()
        if len(times) >= self.limit:
            return times[0] - horizon
        times.append(now)
        return 0.0

    async def acquire(self, key: str) -> float:
        return self.hit(key)

    def _sweep(self, now: float) -> None:
        horizon = now - self.window
        idle = [user for user, times in self._times.items() if not times or times[-1] <= horizon]
        for user in idle:
            del self._times[user]
        self._next_sweep = now + self.window


def rate_limiter(app: FastAPI) -> RequestLimiter:
    """The app's limiter: its gateway's, unless a test set ``app.state.rate_limiter``
    (a short window)."""
    limiter: RequestLimiter | None = getattr(app.state, "rate_limiter", None)
    if limiter is None:
        limiter = app.state.rate_limiter = app.state.gateway.rate_limiter
    return limiter


async def enforce_rate_limit(request: Request) -> None:
    """Router dependency, after ``require_key``: ``429 rate_limited`` with
    ``Retry-After`` once the caller is over ``requests_per_minute``."""
    key = limit_key(request)
    if key is None:
        return
    limiter = rate_limiter(request.app)
    wait = await limiter.acquire(key)
    if wait > 0:
        raise TooManyRequests(
            f"more than {limiter.limit} requests in {limiter.window:g} s "
            f"(requests_per_minute = {limiter.limit}); try again in {wait:.1f} s",
            code="rate_limited",
            retry_after=wait,
        )
