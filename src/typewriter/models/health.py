"""What the gateway knows of one upstream: reachable or not, since when, and why.

Two sources feed it, so that neither has to be frequent: every attempt a
request makes before its first token (``reached`` / ``failed``), and the
readiness check (``check``), which asks the upstream itself only when nothing
told us about it for ``check_interval`` seconds, and which concurrent callers
share. ``known_down`` is what lets a request give up after one quick round
instead of retrying against an upstream that failed a moment ago.

The state is one small record (``UpstreamState``) read by ``/readyz``; whatever
else wants to follow an upstream (a circuit breaker, metrics) reads the same
record and the same three transitions.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["QUIET", "Probe", "UpstreamEvents", "UpstreamHealth", "UpstreamState"]

log = logging.getLogger(__name__)

Probe = Callable[[], Awaitable[str | None]]
"""Asks the upstream once: ``None`` when it answered, else why not (one short line)."""


class UpstreamEvents(Protocol):
    """Who counts what happens to upstreams (the metrics), without the backend knowing them."""

    def upstream_request(self, upstream: str) -> None: ...

    def upstream_error(self, upstream: str, kind: str) -> None: ...

    def upstream_retry(self, upstream: str) -> None: ...

    def upstream_failover(self, from_: str, to: str) -> None: ...

    def upstream_up(self, upstream: str, up: bool) -> None: ...


class _Quiet:
    """Counts nothing: a backend built without metrics (tests, tools)."""

    def upstream_request(self, upstream: str) -> None:
        return None

    def upstream_error(self, upstream: str, kind: str) -> None:
        return None

    def upstream_retry(self, upstream: str) -> None:
        return None

    def upstream_failover(self, from_: str, to: str) -> None:
        return None

    def upstream_up(self, upstream: str, up: bool) -> None:
        return None


QUIET: UpstreamEvents = _Quiet()


@dataclass(frozen=True, slots=True)
class UpstreamState:
    """One upstream as last seen; times are seconds since the epoch."""

    name: str
    up: bool | None
    """``None`` until the first attempt or check says either way."""
    error: str | None
    """Why the last failure failed (kept while down, cleared once it answers)."""
    since: float | None
    """When ``up`` took its current value."""
    checked_at: float | None
    """When anything last told us: a request's attempt or a check."""
    consecutive_failures: int

    def public(self) -> dict[str, Any]:
        """The ``/readyz`` body's entry for this upstream."""
        return {
            "up": self.up,
            "error": self.error,
            "since": self.since,
            "checked_at": self.checked_at,
            "consecutive_failures": self.consecutive_failures,
        }


class UpstreamHealth:
    """The state of one upstream, shared by every assistant that uses it."""

    def __init__(self, name: str, check_interval: float) -> None:
        self.name = name
        self.check_interval = check_interval
        self._state = UpstreamState(name, None, None, None, None, 0)
        self._heard_at = -float("inf")  # monotonic time of the last news, for freshness
        self._check: asyncio.Task[None] | None = None

    @property
    def state(self) -> UpstreamState:
        return self._state

    def reached(self) -> None:
        """The upstream answered (any HTTP answer that is not an outage)."""
        state = self._state
        now = time.time()
        if state.up is False:
            log.info(
                "upstream %s is reachable again after %d failed attempts",
                self.name,
                state.consecutive_failures,
            )
        since = state.since if state.up else now
        self._state = UpstreamState(self.name, True, None, since, now, 0)
        self._heard_at = time.monotonic()

    def failed(self, error: str) -> None:
        """The upstream could not be reached, or answered with a server error."""
        state = self._state
        now = time.time()
        if state.up is not False:
            log.warning("upstream %s is down: %s", self.name, error)
        since = now if state.up is not False else state.since
        failures = state.consecutive_failures + 1
        self._state = UpstreamState(self.name, False, error, since, now, failures)
        self._heard_at = time.monotonic()

    def known_down(self) -> bool:
        """Down, and told so within the last ``check_interval`` seconds."""
        return self._state.up is False and not self._stale()

    async def check(self, probe: Probe) -> UpstreamState:
        """The state, asking the upstream with ``probe`` first if the news is stale.

        Concurrent callers wait for one probe; a caller that goes away (a
        load balancer timing out) does not cancel it for the others.
        """
        if self._stale():
            if self._check is None:
                self._check = asyncio.create_task(self._run(probe))
            await asyncio.shield(self._check)
        return self._state

    def _stale(self) -> bool:
        return time.monotonic() - self._heard_at >= self.check_interval

    async def _run(self, probe: Probe) -> None:
        try:
            error = await probe()
            if error is None:
                self.reached()
            else:
                self.failed(error)
        finally:
            self._check = None
