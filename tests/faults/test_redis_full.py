"""Redis full mid-answer (``maxmemory`` with ``noeviction``) under two replicas on a real Redis.

Redis then refuses every command that may grow its memory. What a user sees: the
answer whose event was refused ends at once, with one ``error``
(``broker_unavailable``) and ``end``, and is stored with exactly the text shown;
an answer of the same replica that is alive but had nothing to write meanwhile is
not taken for dead by the other replica; once memory is freed, asks work again.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from conftest import ServerFactory, read_events
from faults.private_redis import free_memory, full, private_redis
from helpers import ask, data_of, follow, text_of
from redis_server import RedisServer
from typewriter import sse

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

__all__ = ["private_redis"]  # the fixture

LEASE = 3.0  # a replica taken for dead would be claimed within this
SLOW = {"simulate": {"tokens_per_second": 20}}


async def stored(client: httpx.AsyncClient, conversation_id: str) -> dict[str, Any]:
    body = (await client.get(f"/v1/conversations/{conversation_id}")).json()
    answer: dict[str, Any] = body["messages"][-1]
    return answer


async def test_redis_full_ends_the_answer_once_and_claims_nothing_alive(
    private_redis: RedisServer, make_server: ServerFactory
) -> None:
    a = make_server(broker=private_redis.url, lease_timeout=LEASE)
    b = make_server(broker=private_redis.url, lease_timeout=LEASE)
    loop = asyncio.get_running_loop()
    async with (
        httpx.AsyncClient(base_url=a.url, timeout=30) as on_a,
        httpx.AsyncClient(base_url=b.url, timeout=30) as on_b,
    ):
        writing = await ask(on_a, "w" * 800, assistant="echo", options=SLOW)
        # Alive, but with nothing to write while Redis is full: its first token is late.
        idle_options = {"simulate": {"tokens_per_second": 50, "first_token_delay_ms": 5000}}
        idle = await ask(on_a, "i" * 40, assistant="echo", options=idle_options)
        # Each replica keeps its own SQLite file here: what is stored is read on A.
        async with (
            on_b.stream("GET", writing["events_url"]) as response,
            on_b.stream("GET", idle["events_url"]) as idle_response,
        ):
            idle_events = await read_events(idle_response, limit=1)  # start
            shown = await read_events(response, limit=6)
            full(private_redis)
            filled = loop.time()
            async with asyncio.timeout(10):
                shown += await read_events(response)
            ended = loop.time() - filled
            # Full for longer than a lease: a replica whose heartbeat were refused would
            # be taken for dead and its idle answer claimed by the other one.
            await asyncio.sleep(max(0.0, LEASE + 1.0 - (loop.time() - filled)))
            free_memory(private_redis)
            async with asyncio.timeout(20):
                idle_events += await read_events(idle_response)
        names = [e.event for e in shown]
        assert names.count("error") == 1 and names[-2:] == ["error", "end"], names
        assert data_of(shown[-2])["code"] == "broker_unavailable"
        assert data_of(shown[-1])["finish_reason"] == "error"
        assert ended < 3.0, f"the answer ended {ended:.2f} s after Redis filled up"
        assert [int(e.id or 0) for e in shown] == list(range(1, len(shown) + 1))
        text = text_of(shown)
        assert text == "w" * len(text) and len(text) < 800
        answer = await stored(on_a, writing["conversation_id"])
        assert (answer["text"], answer["status"], answer["finish_reason"]) == (
            text,
            "done",
            "error",
        )

        assert [e.event for e in idle_events if e.event == "error"] == []
        assert text_of(idle_events) == "i" * 40
        assert data_of(idle_events[-1])["finish_reason"] == "stop"
        assert [int(e.id or 0) for e in idle_events] == list(range(1, len(idle_events) + 1))
        assert (await stored(on_a, idle["conversation_id"]))["status"] == "done"

        again = await ask(on_a, "after", assistant="echo")
        after: list[sse.Event] = await follow(on_b, again["events_url"])
        assert text_of(after) == "after" and data_of(after[-1])["finish_reason"] == "stop"


async def test_while_redis_is_full_an_ask_gets_503_and_records_nothing_and_stop_works(
    private_redis: RedisServer, make_server: ServerFactory
) -> None:
    server = make_server(broker=private_redis.url)
    waiting = {"simulate": {"first_token_delay_ms": 60_000}}
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        running = await ask(client, "to be stopped", assistant="echo", options=waiting)
        async with client.stream("GET", running["events_url"]) as response:
            shown = await read_events(response, limit=1)  # start
            full(private_redis)
            refused = await client.post("/v1/chat", json={"message": "while full"})
            stop = await client.post(f"/v1/streams/{running['stream_id']}/cancel")
            async with asyncio.timeout(5):
                shown += await read_events(response)
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "broker_unavailable"
        listed = (await client.get("/v1/conversations")).json()["data"]
        assert [c["id"] for c in listed] == [running["conversation_id"]]
        assert stop.status_code == 202, stop.text
        assert [e.event for e in shown] == ["start", "end"]
        assert data_of(shown[-1])["finish_reason"] == "cancelled"
        free_memory(private_redis)
        again = await ask(client, "after", assistant="echo")
        assert text_of(await follow(client, again["events_url"])) == "after"
