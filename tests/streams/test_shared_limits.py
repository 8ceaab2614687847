"""With the Redis broker, the per-user limits hold across replicas, not per replica.

Two replicas on one Redis, auth off and ``limit_loopback`` on, so the test
client is one counted client: its requests and its answers on both replicas add
up to one ``requests_per_minute`` and one ``max_streams_per_user``. The rate
test runs two in-thread servers; the answers test two ``typewriter serve``
processes (``tests/replicas.py``), because a replica killed with SIGKILL must
free its answers' slots once their leases lapse. With Redis cut, each replica
counts alone again rather than refusing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

from conftest import RunningServer, ServerFactory
from helpers import ask, follow, last
from replicas import Replica, Replicas
from tcp_proxy import TcpProxy

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

STALLED = {"simulate": {"stall_after_tokens": 1}}  # generates until stopped
STALL = {"message": "go", "assistant": "echo", "options": STALLED}


@asynccontextmanager
async def clients(*replicas: Replica | RunningServer) -> AsyncIterator[list[httpx.AsyncClient]]:
    opened = [httpx.AsyncClient(base_url=r.url, timeout=30) for r in replicas]
    try:
        yield opened
    finally:
        for client in opened:
            await client.aclose()


async def test_requests_per_minute_is_counted_across_replicas(
    make_server: ServerFactory, redis_url: str
) -> None:
    a, b = (make_server(broker=redis_url, requests_per_minute=4, limit_loopback=True) for _ in "ab")
    async with clients(a, b) as (on_a, on_b):
        accepted = [(await c.get("/v1/assistants")).status_code for c in (on_a, on_b) * 2]
        assert accepted == [200] * 4
        for client in (on_a, on_b):  # the fifth, on either replica
            refused = await client.get("/v1/assistants")
            assert refused.status_code == 429, refused.text
            assert refused.json()["error"]["code"] == "rate_limited"
            assert 55 <= int(refused.headers["retry-after"]) <= 60


async def test_answers_at_once_are_counted_across_replicas_and_freed_by_a_dead_one(
    replicas: Replicas, redis_url: str
) -> None:
    settings = {"limit_loopback": "true", "database_url": "none", "drain_timeout": 0}
    a, b = await asyncio.gather(
        *(
            replicas.start(broker=redis_url, max_streams_per_user=2, lease_timeout=1, **settings)
            for _ in "ab"
        )
    )
    async with clients(a, b) as (on_a, on_b):
        first = await ask(on_a, "one", assistant="echo", options=STALLED)
        await ask(on_b, "two", assistant="echo", options=STALLED)
        for client in (on_a, on_b):
            refused = await client.post("/v1/chat", json=STALL)
            assert refused.status_code == 429, refused.text
            assert refused.json()["error"]["code"] == "too_many_streams"

        # Stopped on A, followed to its end on B: B accepts the next one at once.
        assert (await on_a.post(f"/v1/streams/{first['stream_id']}/cancel")).status_code == 202
        assert last(await follow(on_b, first["events_url"]), "end")["finish_reason"] == "cancelled"
        await ask(on_b, "three", assistant="echo", options=STALLED)
        assert (await on_a.post("/v1/chat", json=STALL)).status_code == 429

        # B dies holding both slots: they are free once its leases lapse (1 s here).
        b.kill()
        async with asyncio.timeout(10):
            while (response := await on_a.post("/v1/chat", json=STALL)).status_code != 202:
                assert response.json()["error"]["code"] == "too_many_streams"
                await asyncio.sleep(0.1)  # polling for the lapse, not guessing it


async def test_with_redis_cut_each_replica_counts_alone(
    make_server: ServerFactory, redis_proxy: TcpProxy
) -> None:
    settings = {
        "broker": f"redis://{redis_proxy.address}/0",
        "requests_per_minute": 2,
        "limit_loopback": True,
        "redis_timeout": 0.5,
    }
    a, b = make_server(**settings), make_server(**settings)
    async with clients(a, b) as (on_a, on_b):
        assert [(await c.get("/v1/assistants")).status_code for c in (on_a, on_b)] == [200, 200]
        assert [(await c.get("/v1/assistants")).status_code for c in (on_a, on_b)] == [429, 429]
        redis_proxy.cut()
        try:
            # Not refused for the counter's sake: each replica counts its own minute.
            statuses = [(await on_a.get("/v1/assistants")).status_code for _ in range(3)]
            assert statuses == [200, 200, 429]
            assert (await on_b.get("/v1/assistants")).status_code == 200
            # An ask fails on its stream, as it would without limits.
            down = await on_b.post("/v1/chat", json=STALL)
            assert down.status_code == 503, down.text
            assert down.json()["error"]["code"] == "broker_unavailable"
        finally:
            redis_proxy.restore()
