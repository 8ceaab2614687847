"""What the gateway knows of one upstream: reachable or not, since when, and why.

Two sources feed it, so that neither has to be frequent: every attempt a
request makes before its first token (``reached`` / ``failed``), and the
readiness check (``check``), which asks the upstream itself only when nothing
told us about it for ``check_interval`` seconds, and which concurrent callers
share.

The same record is the upstream's circuit breaker. A failure opens it: the
upstream is skipped for a cooldown that doubles with each consecutive failure
(``Breaker``), so that answers go straight to the next upstream of their chain
instead of each paying for a connection that was refused a moment ago. When the
cooldown is over the breaker is half-open: exactly one attempt (a request's, or
the readiness check's) is let through as a probe; its success closes the
breaker, its failure opens it again for a longer cooldown. ``known_down`` (open,
or half-open with its probe under way) is what lets a request give up sooner.

The state is one small record (``UpstreamState``) read by ``/readyz``, the
metrics and every request's choice of upstream: there is no second notion of
an upstream's health to disagree with it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

__all__ = [
    "QUIET",
    "Breaker",
    "BreakerState",
    "Probe",
    "UpstreamEvents",
    "UpstreamHealth",
    "UpstreamState",
]

log = logging.getLogger(__name__)

BreakerState = Literal["closed", "open", "half_open"]

Probe = Callable[[], Awaitable[str | None]]
"""Asks the upstream once: ``None`` when it answered, else why not (one short line)."""


class UpstreamEvents(Protocol):
    """Who counts what happens to upstreams (the metrics), without the backend knowing them."""

    def upstream_request(self, upstream: str) -> None: ...

    def upstream_error(self, upstream: str, kind: str) -> None: ...

    def upstream_retry(self, upstream: str) -> None: ...

    def upstream_failover(self, from_: str, to: str) -> None: ...

    def upstream_up(self, upstream: str, up: bool) -> None: ...

    def upstream_breaker(self, upstream: str, state: BreakerState) -> None: ...


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

    def upstream_breaker(self, upstream: str, state: BreakerState) -> None:
        return None


QUIET: UpstreamEvents = _Quiet()


@dataclass(frozen=True, slots=True)
class Breaker:
    """How long a failing upstream is skipped: ``cooldown`` seconds after one failure,
    doubled with each further consecutive failure, at most ``cooldown_max``."""

    cooldown: float = 1.0
    cooldown_max: float = 30.0

    def cooldown_after(self, failures: int) -> float:
        doublings = min(max(failures - 1, 0), 60)  # 2**60 s outgrows any maximum
        return float(min(self.cooldown * 2**doublings, self.cooldown_max))


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
    breaker: BreakerState = "closed"
    """``open`` while its cooldown runs, then ``half_open`` until a probe says either way."""
    open_until: float | None = None
    """When the cooldown of the last failure ends (``None`` while closed)."""

    def public(self) -> dict[str, Any]:
        """The ``/readyz`` body's entry for this upstream."""
        return {
            "up": self.up,
            "error": self.error,
            "since": self.since,
            "checked_at": self.checked_at,
            "consecutive_failures": self.consecutive_failures,
            "state": self.breaker,
            "open_until": self.open_until,
        }


class UpstreamHealth:
    """The state of one upstream, and its breaker, shared by every assistant that uses it."""

    def __init__(self, name: str, check_interval: float, breaker: Breaker | None = None) -> None:
        self.name = name
        self.check_interval = check_interval
        self.breaker = breaker or Breaker()
        self._state = UpstreamState(name, None, None, None, None, 0)
        self._heard_at = -float("inf")  # monotonic time of the last news, for freshness
        self._open_until = -float("inf")  # monotonic end of the cooldown, while not closed
        self._probing = False  # the half-open breaker's one probe is under way
        self._check: asyncio.Task[None] | None = None

    @property
    def state(self) -> UpstreamState:
        """The record as of now: an open breaker whose cooldown is over reads half-open."""
        state = self._state
        breaker = self.breaker_state()
        if breaker == state.breaker:
            return state
        return dataclasses.replace(state, breaker=breaker)

    def breaker_state(self) -> BreakerState:
        if self._state.breaker == "closed":
            return "closed"
        if self._probing or time.monotonic() >= self._open_until:
            return "half_open"
        return "open"

    def available(self) -> bool:
        """Whether an attempt may go now: closed, or half-open with no probe under way."""
        breaker = self.breaker_state()
        return breaker == "closed" or (breaker == "half_open" and not self._probing)

    def known_down(self) -> bool:
        """Its breaker is open (cooldown running), or its one probe is under way."""
        return not self.available()

    def opens_in(self) -> float:
        """Seconds until its cooldown ends (0 when it has, or when closed)."""
        if self._state.breaker == "closed":
            return 0.0
        return max(self._open_until - time.monotonic(), 0.0)

    def admit(self) -> bool:
        """May an attempt go now? Closed: yes. Half-open: the first caller becomes the
        probe (it must end with ``reached``, ``failed`` or ``settle``); the others wait
        for its verdict by going elsewhere. Open: no."""
        breaker = self.breaker_state()
        if breaker == "closed":
            return True
        if breaker == "half_open" and not self._probing:
            self._probing = True
            return True
        return False

    def settle(self) -> None:
        """An admitted attempt ended without saying whether the upstream works (it was
        cancelled, or only a key was refused): the probe slot is free again."""
        self._probing = False

    def reached(self) -> None:
        """The upstream answered (any HTTP answer that is not an outage): closed."""
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
        self._probing = False

    def failed(self, error: str) -> None:
        """The upstream could not be reached, or answered with a server error: the
        breaker opens for a cooldown that grows with the consecutive failures."""
        state = self._state
        now = time.time()
        failures = state.consecutive_failures + 1
        cooldown = self.breaker.cooldown_after(failures)
        if state.up is not False:
            log.warning("upstream %s is down: %s", self.name, error)
        since = now if state.up is not False else state.since
        self._state = UpstreamState(
            self.name, False, error, since, now, failures, "open", now + cooldown
        )
        self._heard_at = time.monotonic()
        self._open_until = self._heard_at + cooldown
        self._probing = False

    async def check(self, probe: Probe) -> UpstreamState:
        """The state, asking the upstream with ``probe`` first if the news is stale and
        the breaker lets an attempt through (closed, or half-open: the check is then its
        probe); an open breaker is not asked before its cooldown ends.

        Concurrent callers wait for one probe; a caller that goes away (a
        load balancer timing out) does not cancel it for the others.
        """
        if self._check is None and self._stale():
            half_open = self.breaker_state() != "closed"
            if self.admit():
                self._check = asyncio.create_task(self._run(probe, half_open))
        if self._check is not None:
            await asyncio.shield(self._check)
        return self.state

    def _stale(self) -> bool:
        return time.monotonic() - self._heard_at >= self.check_interval

    async def _run(self, probe: Probe, half_open: bool) -> None:
        try:
            error = await probe()
            if error is None:
                self.reached()
            else:
                self.failed(error)
        finally:
            self._check = None
            if half_open:  # a probe that gave no verdict frees the slot
                self.settle()
