"""Replicas as real processes on one Redis and one PostgreSQL: crashes, restarts, outages."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from conftest import ServerFactory, read_events
from helpers import ask, data_of, follow, text_of
from replicas import Replicas
from tcp_proxy import TcpProxy
from typewriter import sse

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

LEASE = 3.0
SLOW = {"simulate": {"tokens_per_second": 20}}


async def stored(url: str, conversation_id: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        body = (await client.get(f"/v1/conversations/{conversation_id}")).json()
    answer: dict[str, Any] = body["messages"][-1]
    return answer


async def test_a_killed_replicas_answer_ends_interrupted_on_the_other_within_the_bound(
    replicas: Replicas, redis_url: str, postgres_url: str
) -> None:
    settings = {"broker": redis_url, "database_url": postgres_url, "lease_timeout": LEASE}
    a, b = await asyncio.gather(replicas.start(**settings), replicas.start(**settings))
    loop = asyncio.get_running_loop()
    async with (
        httpx.AsyncClient(base_url=a.url, timeout=30) as on_a,
        httpx.AsyncClient(base_url=b.url, timeout=30) as on_b,
    ):
        started = await ask(on_a, "k" * 800, assistant="echo", options=SLOW)
        async with on_b.stream("GET", started["events_url"]) as response:
            shown = await read_events(response, limit=6)
            a.kill()
            killed = loop.time()
            async with asyncio.timeout(LEASE + 10):
                shown += await read_events(response)
            ended = loop.time() - killed
    names = [e.event for e in shown]
    assert names[-2:] == ["error", "end"], names
    assert data_of(shown[-2])["code"] == "interrupted"
    assert data_of(shown[-1])["finish_reason"] == "error"
    assert ended <= LEASE + 1.0, f"ended {ended:.2f} s after the kill"
    assert [int(e.id or 0) for e in shown] == list(range(1, len(shown) + 1))
    text = text_of(shown)
    assert text and text == "k" * len(text)
    answer = await stored(b.url, started["conversation_id"])
    assert (answer["status"], answer["text"]) == ("interrupted", text)


async def test_a_starting_replica_leaves_running_answers_of_the_others_alone(
    replicas: Replicas, redis_url: str, postgres_url: str
) -> None:
    settings = {"broker": redis_url, "database_url": postgres_url}
    a = await replicas.start(**settings)
    message = "r" * 800
    async with httpx.AsyncClient(base_url=a.url, timeout=30) as on_a:
        started = await ask(on_a, message, assistant="echo", options=SLOW)
        await follow(on_a, started["events_url"], limit=3)
        b = await replicas.start(**settings)  # a rolling deploy: B's start-up checks answers
        assert (await stored(b.url, started["conversation_id"]))["status"] == "streaming"
        rest = await follow(on_a, started["events_url"])
    assert data_of(rest[-1])["finish_reason"] == "stop"
    answer = await stored(b.url, started["conversation_id"])
    assert (answer["status"], answer["text"]) == ("done", message)


async def test_a_redis_outage_ends_other_replicas_responses_cleanly_and_nothing_is_lost(
    make_server: ServerFactory, redis_url: str, redis_proxy: TcpProxy
) -> None:
    """An outage longer than a lease: the listeners wait as long as the answer's lease may
    hold (``lease_timeout``), then end cleanly; a shorter one they ride out
    (tests/faults/test_redis_stalled.py)."""
    generating = make_server(broker=redis_url)
    cut_off = make_server(
        broker=f"redis://{redis_proxy.address}/0", heartbeat=0.5, lease_timeout=LEASE
    )
    message = "o" * 200
    async with (
        httpx.AsyncClient(base_url=generating.url, timeout=30) as on_generating,
        httpx.AsyncClient(base_url=cut_off.url, timeout=30) as client,
    ):
        started = await ask(on_generating, message, assistant="echo", options=SLOW)
        shown: list[sse.Event] = []
        async with client.stream("GET", started["events_url"]) as response:
            shown += await read_events(response, limit=4)
            redis_proxy.cut()
            try:
                async with asyncio.timeout(15):  # the response ends: no hang, no `end`
                    shown += await read_events(response)
                ready = await client.get("/readyz")
                refused = await client.get(started["events_url"])
            finally:
                redis_proxy.restore()
        assert "end" not in [e.event for e in shown]
        assert ready.status_code == 503 and ready.json()["checks"]["broker"] is False
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "broker_unavailable"
        async with asyncio.timeout(20):  # resume as a client would, once it is back
            while (await client.get("/readyz")).status_code != 200:
                await asyncio.sleep(0.2)
        rest = await follow(client, started["events_url"], last_event_id=shown[-1].id)
    events = shown + rest
    assert [int(e.id or 0) for e in events] == list(range(1, len(events) + 1))
    assert text_of(events) == message
    assert json.loads(events[-1].data)["finish_reason"] == "stop"


async def test_an_answer_rides_out_its_own_replicas_redis_outage(
    make_server: ServerFactory, redis_proxy: TcpProxy
) -> None:
    """The generating replica queues its events while Redis is away and writes them
    in order when it is back; its own listener's response goes on, nothing lost."""
    server = make_server(broker=f"redis://{redis_proxy.address}/0", heartbeat=0.5)
    message = "g" * 200
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        started = await ask(client, message, assistant="echo", options=SLOW)
        async with client.stream("GET", started["events_url"]) as response:
            events = await read_events(response, limit=4)
            redis_proxy.cut()
            await asyncio.sleep(2.0)
            redis_proxy.restore()
            async with asyncio.timeout(30):
                events += await read_events(response)
        replay = await follow(client, started["events_url"])
    assert [int(e.id or 0) for e in events] == list(range(1, len(events) + 1))
    assert text_of(events) == message == text_of(replay)
    assert json.loads(events[-1].data)["finish_reason"] == "stop"
