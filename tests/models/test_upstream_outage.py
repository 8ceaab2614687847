"""What an upstream outage looks like: to the user, in the log, and how long it takes.

The user gets one plain sentence and its code; the upstream's name and the
error go to the server's log. Once every upstream is known down, an answer
fails after one quick attempt instead of retrying until ``retry.deadline``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import pytest

from helpers import data_of, last
from typewriter.models.health import Breaker, UpstreamHealth
from upstream.control import Upstream
from upstream.fixtures import Gateway, answer

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

UNREACHABLE = {"code": "upstream_unavailable", "message": "The model is not reachable right now."}
RETRY = {"deadline": 3, "backoff_initial": 0.05, "backoff_max": 0.2}


def closed_port(make_upstream: Callable[[], Upstream]) -> str:
    """The base URL of an upstream that ran and stopped: its port refuses connections."""
    gone = make_upstream()
    base_url = gone.base_url
    gone.stop()
    return base_url


async def test_an_outage_shows_one_sentence_and_logs_the_upstream(
    make_upstream: Callable[[], Upstream], gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    server = gateway(closed_port(make_upstream), retry=RETRY)
    with caplog.at_level(logging.WARNING, logger="typewriter"):
        events = await answer(server)
    assert [e.event for e in events] == ["start", "error", "end"]
    assert data_of(events[1]) == UNREACHABLE
    assert last(events, "end")["finish_reason"] == "error"
    gave_up = [r for r in caplog.records if "no upstream answered" in r.message]
    assert len(gave_up) == 1 and gave_up[0].levelno == logging.WARNING
    assert "u0: connection failed (ConnectError)" in gave_up[0].message
    assert any(r.message.startswith("upstream u0 is down") for r in caplog.records)


async def test_with_every_upstream_known_down_an_answer_fails_at_once(
    make_upstream: Callable[[], Upstream], gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    retry = {**RETRY, "deadline": 5}
    server = gateway(closed_port(make_upstream), closed_port(make_upstream), retry=retry)
    caplog.set_level(logging.WARNING, logger="typewriter")
    started = time.monotonic()
    first = await answer(server)
    learning = time.monotonic() - started
    started = time.monotonic()
    second = await answer(server)
    known = time.monotonic() - started
    assert data_of(first[1]) == data_of(second[1]) == UNREACHABLE
    assert learning > 4.0  # nothing known yet: retried until close to the deadline
    assert known < 1.5, f"{known:.2f} s with both upstreams known down"
    gave_up = [r.message for r in caplog.records if "no upstream answered" in r.message]
    assert "(retried)" in gave_up[0]
    # Every breaker open: one attempt, where the cooldown ends first (see test_circuit_breaker).
    assert "1 attempt(s)" in gave_up[1] and "every upstream known down" in gave_up[1]


async def test_errors_from_an_upstream_name_neither_it_nor_exception_classes(
    upstream: Upstream, gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    server = gateway(upstream)
    upstream.script(
        {"status": 400, "error_message": "context too long"},
        {"drop_after_tokens": 2},
    )
    with caplog.at_level(logging.WARNING, logger="typewriter"):
        rejected = data_of((await answer(server))[1])
        broken = data_of([e for e in await answer(server) if e.event == "error"][0])
    assert rejected == {
        "code": "upstream_error",
        "message": "the model rejected the request: 400 context too long",
    }
    assert broken == {
        "code": "upstream_error",
        "message": "the connection to the model broke mid-answer",
    }
    assert "upstream u0 rejected a request: 400 context too long" in caplog.text
    assert "upstream u0 failed mid-answer: the connection to the model broke" in caplog.text
    assert "Error)" in caplog.text  # the exception's class is in the log, not the answer


async def test_concurrent_checks_share_one_probe_and_it_is_reused() -> None:
    health = UpstreamHealth("u", check_interval=0.3, breaker=Breaker(cooldown=0.2))
    probes = 0

    async def probe() -> str | None:
        nonlocal probes
        probes += 1
        await asyncio.sleep(0.05)
        return "connection failed (ConnectError)"

    impatient = asyncio.create_task(health.check(probe))
    await asyncio.sleep(0.01)  # its probe is under way
    impatient.cancel()  # a caller leaving (a load balancer's timeout) cancels nothing
    states = await asyncio.gather(*(health.check(probe) for _ in range(10)))
    assert probes == 1 and {s.up for s in states} == {False}
    assert health.known_down()
    await health.check(probe)
    assert probes == 1  # fresh news: no new probe
    await asyncio.sleep(0.3)
    assert not health.known_down()  # down, but its cooldown is over: half-open, a probe may go
    state = await health.check(probe)
    assert probes == 2 and state.consecutive_failures == 2
