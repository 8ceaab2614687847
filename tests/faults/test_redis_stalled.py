"""Redis stalled (the process stopped with SIGSTOP) or cut off (a TCP proxy), on a real Redis.

What a user sees: an ask fails within about ``redis_timeout`` with the contract's
``503`` and nothing is recorded for it; a listener following another replica's
answer stays open with heartbeats through an outage of more than 2 s (a reconnect
meanwhile would get a 503, on which a browser's EventSource gives up for good)
and goes on, with contiguous ids, once Redis is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import httpx
import pytest

from conftest import ServerFactory
from faults.private_redis import frozen, private_redis
from helpers import ask, follow, text_of
from redis_server import RedisServer
from tcp_proxy import TcpProxy
from typewriter import sse

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

__all__ = ["private_redis"]  # the fixture

REDIS_TIMEOUT = 1.5
SLOW = {"simulate": {"tokens_per_second": 20}}
OUTAGE = 3.5  # longer than the 2 s after which followers used to give up


async def test_an_ask_fails_within_redis_timeout_and_records_nothing(
    private_redis: RedisServer, make_server: ServerFactory
) -> None:
    server = make_server(broker=private_redis.url, redis_timeout=REDIS_TIMEOUT)
    loop = asyncio.get_running_loop()
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
        first = await ask(client, "before", assistant="echo")
        await follow(client, first["events_url"])
        conversation = f"/v1/conversations/{first['conversation_id']}"
        before = (await client.get(conversation)).json()["messages"]
        with frozen(private_redis):
            began = loop.time()
            into_it = await client.post(
                "/v1/chat",
                json={"message": "stalled", "conversation_id": first["conversation_id"]},
            )
            took = loop.time() - began
            fresh = await client.post("/v1/chat", json={"message": "stalled too"})
        assert into_it.status_code == 503, into_it.text
        assert into_it.json()["error"]["code"] == "broker_unavailable"
        assert set(into_it.json()["error"]) >= {"code", "message"}
        port = private_redis.url.rsplit(":", 1)[1].split("/")[0]
        for refused in (into_it, fresh):  # where Redis is, is for the operator's log
            assert port not in refused.text and "Timeout" not in refused.text, refused.text
        assert fresh.status_code == 503, fresh.text
        assert (await client.get(conversation)).json()["messages"] == before
        listed = (await client.get("/v1/conversations")).json()
        assert [c["id"] for c in listed["data"]] == [first["conversation_id"]]
        assert took < REDIS_TIMEOUT + 1.0, f"the ask took {took:.2f} s to fail"
        again = await ask(client, "after", conversation_id=first["conversation_id"])
        assert text_of(await follow(client, again["events_url"])) != ""


@contextlib.asynccontextmanager
async def raw_reading(
    client: httpx.AsyncClient, url: str, last_event_id: str | None = None
) -> AsyncIterator[tuple[list[tuple[float, bytes]], asyncio.Task[None]]]:
    """The response's chunks as they come, timed, read by a task of its own."""
    chunks: list[tuple[float, bytes]] = []
    loop = asyncio.get_running_loop()
    headers = {"last-event-id": last_event_id} if last_event_id else {}
    async with client.stream("GET", url, headers=headers) as response:
        assert response.status_code == 200, await response.aread()

        async def read() -> None:
            async for chunk in response.aiter_bytes():
                chunks.append((loop.time(), chunk))

        reader = asyncio.create_task(read())
        try:
            yield chunks, reader
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader


async def wait_for_events(chunks: list[tuple[float, bytes]], count: int) -> None:
    async with asyncio.timeout(10):
        while b"".join(c for _, c in chunks).count(b"\nid: ") < count:
            await asyncio.sleep(0.02)


def check_rode_out(
    chunks: list[tuple[float, bytes]], began: float, ended: float, message: str, after: int = 0
) -> None:
    """Pings during the outage, then every event after ``after`` once, in order, to ``end``."""
    during = b"".join(c for at, c in chunks if began <= at <= ended)
    assert during.count(b": ping") >= 2, during
    events = sse.Parser().feed(b"".join(c for _, c in chunks))
    assert [int(e.id or 0) for e in events] == list(range(after + 1, after + len(events) + 1))
    assert message.endswith(text_of(events))
    if after == 0:
        assert text_of(events) == message
    assert json.loads(events[-1].data)["finish_reason"] == "stop"


def last_id(chunks: list[tuple[float, bytes]]) -> int:
    return int(sse.Parser().feed(b"".join(c for _, c in chunks))[-1].id or 0)


async def test_a_follower_stays_open_through_a_network_cut_and_goes_on(
    private_redis: RedisServer, make_server: ServerFactory
) -> None:
    """The follower's replica loses Redis (its network): its listener keeps the answer, and
    one who reconnects meanwhile (``Last-Event-ID``) is let in, not refused."""
    proxy = TcpProxy("127.0.0.1", private_redis.port)
    try:
        generating = make_server(broker=private_redis.url)
        cut_off = make_server(broker=f"redis://{proxy.address}/0", heartbeat=0.5)
        message = "n" * 240  # 60 pieces: 3 s at 20 a second
        loop = asyncio.get_running_loop()
        async with (
            httpx.AsyncClient(base_url=generating.url, timeout=30) as on_generating,
            httpx.AsyncClient(base_url=cut_off.url, timeout=30) as client,
        ):
            started = await ask(on_generating, message, assistant="echo", options=SLOW)
            url = started["events_url"]
            async with raw_reading(client, url) as (chunks, reader):
                await wait_for_events(chunks, 4)
                proxy.cut()
                began = loop.time()
                await asyncio.sleep(1.0)
                seen = last_id(chunks)
                async with raw_reading(client, url, str(seen)) as (again, rejoined):
                    await asyncio.sleep(OUTAGE - 1.0)
                    assert not reader.done(), "the response ended during the outage"
                    assert not rejoined.done(), "the reconnect ended during the outage"
                    proxy.restore()
                    ended = loop.time()
                    async with asyncio.timeout(15):
                        await asyncio.gather(reader, rejoined)
        check_rode_out(chunks, began, ended, message)
        check_rode_out(again, began, ended, message, after=seen)
    finally:
        proxy.close()


async def test_a_follower_stays_open_while_redis_is_stalled_and_goes_on(
    private_redis: RedisServer, make_server: ServerFactory
) -> None:
    settings = {"broker": private_redis.url, "redis_timeout": REDIS_TIMEOUT, "heartbeat": 0.5}
    generating = make_server(**settings)
    following = make_server(**settings)
    message = "s" * 240
    loop = asyncio.get_running_loop()
    async with (
        httpx.AsyncClient(base_url=generating.url, timeout=30) as on_generating,
        httpx.AsyncClient(base_url=following.url, timeout=30) as client,
    ):
        started = await ask(on_generating, message, assistant="echo", options=SLOW)
        async with raw_reading(client, started["events_url"]) as (chunks, reader):
            await wait_for_events(chunks, 4)
            with frozen(private_redis):
                began = loop.time()
                await asyncio.sleep(OUTAGE)
                assert not reader.done(), "the response ended during the stall"
            ended = loop.time()
            async with asyncio.timeout(15):
                await reader
    check_rode_out(chunks, began, ended, message)
