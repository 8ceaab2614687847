"""Redis loses its data while replicas run: FLUSHALL, or a restart without persistence.

What a user must see: a running answer goes on with no gap (its producer writes
back what Redis lost, with the same numbers), a reconnect in between is
answered, and an answer whose producer died too ends ``interrupted`` with the
text that was shown, stored as such. The user's channel says ``reset`` rather
than falling silent. Real redis-server, real replica processes, real HTTP.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from conftest import read_events
from helpers import ask, data_of, follow, text_of
from redis_server import RedisServer
from replicas import Replica, Replicas
from typewriter import sse

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

LEASE = 3.0


def steady(rate: float, **more: Any) -> dict[str, Any]:
    return {"simulate": {"tokens_per_second": rate, **more}}


async def stored(url: str, conversation_id: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        body = (await client.get(f"/v1/conversations/{conversation_id}")).json()
    answer: dict[str, Any] = body["messages"][-1]
    return answer


async def two_replicas(replicas: Replicas, redis_url: str, postgres_url: str) -> list[Replica]:
    settings = {"broker": redis_url, "database_url": postgres_url, "lease_timeout": LEASE}
    return list(await asyncio.gather(replicas.start(**settings), replicas.start(**settings)))


def numbered(events: list[sse.Event]) -> list[int]:
    return [int(e.id or 0) for e in events]


async def test_a_flushall_mid_answer_loses_nothing_on_any_replica(
    replicas: Replicas, redis_server: RedisServer, redis_url: str, postgres_url: str
) -> None:
    a, b = await two_replicas(replicas, redis_url, postgres_url)
    message = "f" * 240  # 60 pieces at 30 a second: two seconds
    async with (
        httpx.AsyncClient(base_url=a.url, timeout=30) as on_a,
        httpx.AsyncClient(base_url=b.url, timeout=30) as on_b,
    ):
        started = await ask(on_a, message, assistant="echo", options=steady(30))
        url = started["events_url"]
        async with on_a.stream("GET", url) as here, on_b.stream("GET", url) as there:
            seen_here = await read_events(here, limit=5)
            seen_there = await read_events(there, limit=5)
            redis_server.flush()
            # A client that reconnects right then is answered, from where it was.
            resumed = await follow(on_b, url, last_event_id=seen_there[-1].id)
            async with asyncio.timeout(15):
                seen_here += await read_events(here)
                seen_there += await read_events(there)
    for events in (seen_here, seen_there, seen_there[:5] + resumed):
        assert numbered(events) == list(range(1, len(events) + 1)), [e.event for e in events]
        assert text_of(events) == message
        assert [e.event for e in events][-1] == "end"
        assert data_of(events[-1])["finish_reason"] == "stop"
    answer = await stored(b.url, started["conversation_id"])
    assert (answer["status"], answer["text"]) == ("done", message)


async def test_a_quiet_answer_is_written_back_before_its_next_token(
    replicas: Replicas, redis_server: RedisServer, redis_url: str, postgres_url: str
) -> None:
    """The model says nothing after the loss (a stall): its producer writes the stream back
    anyway, so a reconnect elsewhere gets 200 with every event, and Stop still works."""
    a, b = await two_replicas(replicas, redis_url, postgres_url)
    async with (
        httpx.AsyncClient(base_url=a.url, timeout=30) as on_a,
        httpx.AsyncClient(base_url=b.url, timeout=30) as on_b,
    ):
        options = steady(50, stall_after_tokens=4)
        started = await ask(on_a, "q" * 100, assistant="echo", options=options)
        url = started["events_url"]
        before = await follow(on_b, url, limit=5)  # start and the four pieces
        redis_server.flush()
        async with on_b.stream("GET", url, headers={"last-event-id": "2"}) as response:
            assert response.status_code == 200, await response.aread()
            rest = await read_events(response, limit=3)
            stop = await on_b.post(started["events_url"].replace("/events", "/cancel"))
            assert stop.status_code == 202, stop.text
            async with asyncio.timeout(10):
                rest += await read_events(response)
    assert numbered(before[:2] + rest) == list(range(1, len(rest) + 3))
    assert text_of(before[:2] + rest) == "q" * 16
    assert data_of(rest[-1])["finish_reason"] == "cancelled"


async def test_redis_restarted_empty_with_its_producer_dead_ends_interrupted_as_shown(
    replicas: Replicas, redis_server: RedisServer, redis_url: str, postgres_url: str
) -> None:
    a, b = await two_replicas(replicas, redis_url, postgres_url)
    loop = asyncio.get_running_loop()
    async with (
        httpx.AsyncClient(base_url=a.url, timeout=30) as on_a,
        httpx.AsyncClient(base_url=b.url, timeout=30) as on_b,
    ):
        started = await ask(on_a, "k" * 800, assistant="echo", options=steady(20))
        async with on_b.stream("GET", started["events_url"]) as response:
            shown = await read_events(response, limit=6)
            a.kill()
            redis_server.restart()
            lost = loop.time()
            async with asyncio.timeout(LEASE * 2 + 5):
                shown += await read_events(response)
            ended = loop.time() - lost
    names = [e.event for e in shown]
    assert names[-2:] == ["error", "end"], names
    assert data_of(shown[-2])["code"] == "interrupted"
    assert data_of(shown[-1])["finish_reason"] == "error"
    assert numbered(shown) == list(range(1, len(shown) + 1))
    assert ended <= LEASE + 2.0, f"ended {ended:.2f} s after the loss"
    text = text_of(shown)
    assert text and text == "k" * len(text)
    answer = await stored(b.url, started["conversation_id"])
    assert (answer["status"], answer["text"]) == ("interrupted", text)


async def test_a_channel_listener_across_a_flushall_gets_a_reset_then_live_events(
    replicas: Replicas, redis_server: RedisServer, redis_url: str, postgres_url: str
) -> None:
    a, b = await two_replicas(replicas, redis_url, postgres_url)
    async with (
        httpx.AsyncClient(base_url=a.url, timeout=30) as on_a,
        httpx.AsyncClient(base_url=b.url, timeout=30) as on_b,
        on_b.stream("GET", "/v1/events") as channel,
    ):
        [connected] = await read_events(channel, limit=1)
        assert connected.event == "connected" and connected.id
        first = await ask(on_a, "one", assistant="echo", options=steady(200))
        await follow(on_a, first["events_url"])
        before = await read_events(channel, limit=3)  # start, "one", end
        assert [e.event for e in before] == ["start", "delta", "end"]
        redis_server.flush()
        second = await ask(on_a, "two", assistant="echo", options=steady(200))
        async with asyncio.timeout(10):
            after = await read_events(channel, limit=4)
        # A reconnect from before the loss is answered too: a reset, then live events.
        async with on_b.stream(
            "GET", "/v1/events", headers={"last-event-id": before[-1].id or ""}
        ) as again:
            assert again.status_code == 200
            reconnected = await read_events(again, limit=2)
    assert [e.event for e in after] == ["reset", "start", "delta", "end"]
    assert data_of(after[0])["reason"] == "epoch"
    assert data_of(after[0])["cursor"] == after[0].id
    assert {data_of(e)["stream_id"] for e in after[1:]} == {second["stream_id"]}
    epochs = {e.id.split("-")[0] for e in after if e.id} | {
        before[-1].id.split("-")[0] if before[-1].id else ""
    }
    assert len(epochs) == 2, epochs  # cursors of the new epoch
    assert [e.event for e in reconnected] == ["connected", "reset"]
    assert data_of(reconnected[1])["reason"] == "epoch"
