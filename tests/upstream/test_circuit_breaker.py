"""The circuit breaker: a failed upstream is skipped for a cooldown that grows, then probed once.

Two real scripted upstreams behind a real gateway (``u0`` first, ``u1`` second). Whether an
answer touched an upstream is read from that upstream's own request log, the breaker's state
from ``/readyz`` and ``/metrics``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from conftest import RunningServer, ServerFactory
from helpers import data_of, last, text_of
from observe.scrape import scrape, value
from upstream.control import Upstream
from upstream.fixtures import answer

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

HELLO = "Hello from the test upstream."


RETRY = {"deadline": 5, "backoff_initial": 0.05, "backoff_max": 0.2}


def two_upstreams(
    make_server: ServerFactory,
    first: Upstream,
    second: Upstream,
    cooldown: float,
    cooldown_max: float = 30.0,
    check_interval: float = 5.0,
    retry: dict[str, float] = RETRY,
) -> RunningServer:
    """A gateway whose assistant ``up`` fails over from ``u0`` (``first``) to ``u1``."""
    upstreams = [
        {
            "name": f"u{i}",
            "base_url": up.base_url,
            "headers_timeout": 5,
            "breaker_cooldown": cooldown,
            "breaker_cooldown_max": cooldown_max,
        }
        for i, up in enumerate((first, second))
    ]
    return make_server(
        upstreams=upstreams,
        assistants=[{"name": "up", "model": "test-model"}],
        retry=retry,
        upstream_check_interval=check_interval,
    )


async def readyz(server: RunningServer) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        response = await client.get("/readyz")
    upstreams: dict[str, Any] = response.json()["upstreams"]
    return upstreams


async def breaker_gauge(server: RunningServer, upstream: str) -> float:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        samples = await scrape(client)
    return value(samples, "typewriter_upstream_breaker_state", upstream=upstream)


async def test_a_failed_upstream_is_not_touched_during_its_cooldown(
    make_upstream: Callable[[], Upstream], make_server: ServerFactory
) -> None:
    first, second = make_upstream(), make_upstream()
    first.script({"status": 503})
    server = two_upstreams(make_server, first, second, cooldown=30)
    for _ in range(3):
        assert text_of(await answer(server)) == HELLO
    assert [r["status"] for r in first.requests()] == [503]  # the next answers skipped it
    assert [r["status"] for r in second.requests()] == [200, 200, 200]


async def test_half_open_lets_exactly_one_probe_through_and_its_success_closes_it(
    make_upstream: Callable[[], Upstream], make_server: ServerFactory
) -> None:
    first, second = make_upstream(), make_upstream()
    first.script({"status": 503}, {"delay_headers_ms": 600})
    server = two_upstreams(make_server, first, second, cooldown=0.5)
    assert text_of(await answer(server)) == HELLO  # u0: 503, then u1
    await asyncio.sleep(0.7)  # the cooldown is over: half-open
    probe, other = await asyncio.gather(answer(server), answer(server))
    assert text_of(probe) == text_of(other) == HELLO
    # One of the two concurrent answers was the probe (u0, slow but fine); the other did
    # not wait for its verdict and went to u1.
    assert [r["status"] for r in first.requests()] == [503, 200]
    assert [r["status"] for r in second.requests()] == [200, 200]
    state = (await readyz(server))["u0"]
    assert state["state"] == "closed" and state["open_until"] is None
    assert state["up"] is True and state["consecutive_failures"] == 0
    assert text_of(await answer(server)) == HELLO  # closed: u0 answers again, first
    assert len(first.requests()) == 3 and len(second.requests()) == 2


async def test_a_failed_probe_reopens_with_a_longer_cooldown(
    make_upstream: Callable[[], Upstream], make_server: ServerFactory
) -> None:
    first, second = make_upstream(), make_upstream()
    first.script({"status": 503}, {"status": 503}, {"status": 500})
    server = two_upstreams(make_server, first, second, 0.4, 1.0, check_interval=60)
    cooldowns: list[float] = []
    for _ in range(3):
        if cooldowns:
            await asyncio.sleep(cooldowns[-1] + 0.15)  # past it: the next answer is the probe
        assert text_of(await answer(server)) == HELLO
        state = (await readyz(server))["u0"]
        assert state["state"] == "open" and state["up"] is False
        cooldowns.append(state["open_until"] - state["checked_at"])
    assert cooldowns == pytest.approx([0.4, 0.8, 1.0], abs=0.01)  # doubled, then the maximum
    assert [r["status"] for r in first.requests()] == [503, 503, 500]
    assert len(second.requests()) == 3
    assert (await readyz(server))["u0"]["consecutive_failures"] == 3


async def test_readyz_and_the_gauge_show_the_breaker_and_the_check_is_its_probe(
    make_upstream: Callable[[], Upstream], make_server: ServerFactory
) -> None:
    first, second = make_upstream(), make_upstream()
    first.script({"status": 503})
    server = two_upstreams(make_server, first, second, cooldown=2.0, check_interval=0.2)
    before = time.time()
    assert text_of(await answer(server)) == HELLO
    opened = (await readyz(server))["u0"]
    assert opened["state"] == "open" and opened["error"].startswith("503")
    assert before + 2.0 <= opened["open_until"] <= time.time() + 2.0
    assert await breaker_gauge(server, "u0") == 2
    assert await breaker_gauge(server, "u1") == 0
    await asyncio.sleep(0.4)  # stale news, but the cooldown runs: /readyz does not ask u0
    assert time.time() < opened["open_until"]
    assert (await readyz(server))["u0"] == opened
    await asyncio.sleep(max(opened["open_until"] - time.time(), 0) + 0.1)
    closed = (await readyz(server))["u0"]  # half-open: the check was the probe, and it answered
    assert closed["state"] == "closed" and closed["up"] is True
    assert closed["checked_at"] > opened["open_until"]
    assert await breaker_gauge(server, "u0") == 0
    assert len(first.requests()) == 1  # the probe was a GET /models, not an answer


async def test_with_every_upstream_open_an_answer_tries_the_soonest_once_and_gives_up(
    make_upstream: Callable[[], Upstream], make_server: ServerFactory
) -> None:
    first, second = make_upstream(), make_upstream()
    first.script(*[{"status": 503}] * 100)
    second.script(*[{"status": 503}] * 100)
    retry = {"deadline": 0.5, "backoff_initial": 0.05, "backoff_max": 0.1}
    server = two_upstreams(make_server, first, second, 5.0, 5.0, retry=retry)
    events = await answer(server)  # it met the failures itself: retried until the deadline
    assert data_of(events[1])["code"] == "upstream_unavailable"
    seen = {"u0": len(first.requests()), "u1": len(second.requests())}
    assert min(seen.values()) >= 2
    states = await readyz(server)
    assert {s["state"] for s in states.values()} == {"open"}
    soonest = min(states, key=lambda name: states[name]["open_until"])
    started = time.monotonic()
    events = await answer(server)
    assert time.monotonic() - started < 0.5  # no cooldown waited for, no deadline spent
    assert [e.event for e in events] == ["start", "error", "end"]
    assert data_of(events[1])["code"] == "upstream_unavailable"
    assert last(events, "end")["finish_reason"] == "error"
    now = {"u0": len(first.requests()), "u1": len(second.requests())}
    assert now == {name: seen[name] + (name == soonest) for name in seen}  # one attempt there
