"""Two replicas behind Debian's nginx, configured with the server block of docs/deploy.md.

The block is read from the document itself (``tests/nginx_proxy.py``), so the configuration
the document recommends is the one tested. A proxy that holds the answer back still delivers
every event, only all of them at the end; what shows the typewriter effect is
*when* the events arrive, so the tests record the arrival time of each ``delta``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import read_events
from helpers import ask, data_of, follow, last, text_of
from nginx_proxy import Nginx, start_nginx
from replicas import Replicas
from typewriter import sse

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

TOKENS_PER_SECOND = 20
PIECES = 30  # echo answers in pieces of 4 characters
MESSAGE = "".join(f"<{i:02d}>" for i in range(PIECES))  # 120 characters, 30 distinct pieces
GENERATION_SECONDS = (PIECES - 1) / TOKENS_PER_SECOND  # first delta to last: 1.45 s
SLOW = {"simulate": {"tokens_per_second": TOKENS_PER_SECOND}}


async def start_replicas(replicas: Replicas, redis_url: str, postgres_url: str) -> list[str]:
    """Two replicas on one Redis and one database, started together: their addresses."""
    started = await asyncio.gather(
        *(replicas.start(broker=redis_url, database_url=postgres_url) for _ in range(2))
    )
    return [f"127.0.0.1:{replica.port}" for replica in started]


@pytest.fixture
async def nginx(
    request: pytest.FixtureRequest,
    replicas: Replicas,
    redis_url: str,
    postgres_url: str,
    tmp_path: Path,
) -> AsyncIterator[Nginx]:
    """nginx with the documented block (or, parametrized indirectly, a variant of it)."""
    variant = getattr(request, "param", "documented")
    upstreams = await start_replicas(replicas, redis_url, postgres_url)
    proxy = start_nginx(tmp_path / "nginx", upstreams, variant)
    try:
        yield proxy
    finally:
        proxy.stop()


# -- reading with arrival times ---------------------------------------------------------


async def timed_events(response: httpx.Response) -> list[tuple[float, sse.Event]]:
    """Every event of the response with the moment it was parsed off the wire."""
    assert response.status_code == 200, (response.status_code, await response.aread())
    assert response.headers["content-type"].startswith("text/event-stream")
    timed = []
    async with asyncio.timeout(30):
        while events := await read_events(response, limit=1):
            timed.append((time.monotonic(), events[0]))
    return timed


async def ask_direct(client: httpx.AsyncClient) -> list[tuple[float, sse.Event]]:
    body = {"message": MESSAGE, "assistant": "echo", "options": SLOW}
    headers = {"accept": "text/event-stream"}
    async with client.stream("POST", "/v1/chat", json=body, headers=headers) as response:
        return await timed_events(response)


async def ask_detached(client: httpx.AsyncClient) -> list[tuple[float, sse.Event]]:
    started = await ask(client, MESSAGE, assistant="echo", options=SLOW)
    async with client.stream("GET", started["events_url"]) as response:
        return await timed_events(response)


def arrivals(timed: list[tuple[float, sse.Event]]) -> list[float]:
    """Arrival times of the deltas, after checking the answer came whole and in order."""
    events = [event for _, event in timed]
    assert text_of(events) == MESSAGE
    assert last(events, "end")["finish_reason"] == "stop"
    assert [int(event.id or 0) for event in events] == list(range(1, len(events) + 1))
    times = [at for at, event in timed if event.event == "delta"]
    assert len(times) == PIECES
    return times


def largest_burst(times: list[float], window: float = 0.010) -> int:
    """The most deltas that arrived within one ``window`` seconds."""
    return max(sum(1 for t in times if start <= t < start + window) for start in times)


def assert_one_by_one(times: list[float]) -> None:
    """Spread over the generation, not in a lump.

    The model sends a delta every 50 ms for 1.45 s. The margins are wide for a
    busy machine (a stall of a few hundred milliseconds bunches a few deltas),
    and a lump still fails both checks: it arrives within a few milliseconds.
    """
    spread = times[-1] - times[0]
    burst = largest_burst(times)
    assert spread >= GENERATION_SECONDS / 2, f"deltas arrived within {spread:.3f} s"
    assert burst <= PIECES // 3, f"{burst} of {PIECES} deltas arrived within 10 ms"


MODES = {"direct": ask_direct, "detached": ask_detached}


@pytest.mark.parametrize("mode", MODES)
async def test_tokens_arrive_one_by_one_through_nginx(nginx: Nginx, mode: str) -> None:
    async with httpx.AsyncClient(base_url=nginx.url, timeout=30) as client:
        times = arrivals(await MODES[mode](client))
    assert_one_by_one(times)


@pytest.mark.parametrize("nginx", ["buffering_and_gzip"], indirect=True)
async def test_a_buffering_compressing_proxy_delivers_them_in_one_lump(nginx: Nginx) -> None:
    """The same check fails behind a proxy that holds the answer back: the test can tell."""
    async with httpx.AsyncClient(base_url=nginx.url, timeout=30) as client:
        started = await ask(client, MESSAGE, assistant="echo", options=SLOW)
        async with client.stream("GET", started["events_url"]) as response:
            assert response.headers["content-encoding"] == "gzip"
            times = arrivals(await timed_events(response))
    with pytest.raises(AssertionError):
        assert_one_by_one(times)
    assert times[-1] - times[0] < GENERATION_SECONDS / 4


async def test_a_stream_resumes_across_replicas_after_drops(nginx: Nginx) -> None:
    message = "Resumed through nginx, exactly once: 🎉 ünïcödé\r\n\tand more. " * 3
    options: dict[str, Any] = {"simulate": {"tokens_per_second": 50}}
    async with httpx.AsyncClient(base_url=nginx.url, timeout=30) as client:
        started = await ask(client, message, assistant="echo", options=options)
        events: list[sse.Event] = []
        while not events or events[-1].event != "end":
            # Read a few events, then drop the connection; nginx sends the resume to the
            # next replica in turn.
            last_id = events[-1].id if events else None
            events += await follow(client, started["events_url"], last_event_id=last_id, limit=4)
        done = await client.get(
            started["events_url"], headers={"last-event-id": events[-1].id or ""}
        )
    assert done.status_code == 204
    assert text_of(events) == message
    assert [int(event.id or 0) for event in events] == list(range(1, len(events) + 1))
    generated_on = nginx.served_by("/v1/chat")
    followed_on = nginx.served_by(f"/v1/streams/{started['stream_id']}/events")
    assert len(generated_on) == 1
    assert followed_on - generated_on, "no resume reached the other replica"


async def test_closing_a_direct_answer_through_nginx_stops_generating(nginx: Nginx) -> None:
    """nginx closes its connection to the replica when the client leaves: that is Stop."""
    message = "z" * 400  # 100 pieces: 5 s at 20 a second
    body = {"message": message, "assistant": "echo", "options": SLOW}
    async with httpx.AsyncClient(base_url=nginx.url, timeout=30) as client:
        headers = {"accept": "text/event-stream"}
        async with client.stream("POST", "/v1/chat", json=body, headers=headers) as response:
            head = await read_events(response, limit=3)
        conversation = f"/v1/conversations/{data_of(head[0])['conversation_id']}"
        async with asyncio.timeout(10):  # the whole answer would take 5 s
            while True:
                answer = (await client.get(conversation)).json()["messages"][-1]
                if answer["status"] != "streaming":
                    break
                await asyncio.sleep(0.05)
    assert answer["finish_reason"] == "cancelled"
    assert len(answer["text"]) < len(message)
