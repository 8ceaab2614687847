"""With auth off, the per-user limits count each client, by an address it cannot choose.

A real server, and clients bound to distinct loopback source addresses
(127.0.0.2, 127.0.0.3, …): each is its own client, with its own
``requests_per_minute``, ``max_streams_per_user`` and ``max_listeners_per_user``.
Being loopback, they are exempt unless ``limit_loopback`` is on; the tests turn
it on where they need them counted. ``X-Forwarded-For`` names the client only
when the peer is in ``trusted_proxies``; an nginx on this host, forwarding real
clients, is in ``tests/deploy/test_forwarded_clients.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

from conftest import ServerFactory, read_events
from helpers import ask

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

STALLED = {"simulate": {"stall_after_tokens": 1}}  # generates until stopped


@asynccontextmanager
async def client_from(url: str, source: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client whose connections leave from ``source`` (any 127.0.0.0/8 address on Linux)."""
    transport = httpx.AsyncHTTPTransport(local_address=source)
    async with httpx.AsyncClient(base_url=url, transport=transport, timeout=30) as client:
        yield client


async def statuses(client: httpx.AsyncClient, n: int, **headers: str) -> list[int]:
    return [(await client.get("/v1/assistants", headers=headers)).status_code for _ in range(n)]


async def test_each_client_address_has_its_own_limits(make_server: ServerFactory) -> None:
    server = make_server(
        requests_per_minute=3, max_streams_per_user=1, max_listeners_per_user=1, limit_loopback=True
    )
    async with (
        client_from(server.url, "127.0.0.2") as ann,
        client_from(server.url, "127.0.0.3") as bob,
    ):
        # Ann's listener, then Bob's: with a cap of one, Bob's does not replace Ann's.
        async with ann.stream("GET", "/v1/events") as ann_channel:
            assert [e.event for e in await read_events(ann_channel, limit=1)] == ["connected"]
            async with bob.stream("GET", "/v1/events") as bob_channel:
                await read_events(bob_channel, limit=1)
                started = await ask(ann, "one", assistant="echo", options=STALLED)
                # Ann's channel still carries her answer: it was not ended by Bob's.
                async with asyncio.timeout(10):
                    seen = [e.event for e in await read_events(ann_channel, limit=1)]
                assert seen == ["start"]
        again = await ann.post("/v1/chat", json={"message": "two", "assistant": "echo"})
        assert again.status_code == 429 and again.json()["error"]["code"] == "too_many_streams"
        refused = await statuses(ann, 2)  # her third request of the minute, then a fourth
        assert refused == [200, 429]

        # Bob has his own answer slot and his own minute, while Ann is refused both.
        other = await ask(bob, "three", assistant="echo", options=STALLED)
        assert await statuses(bob, 3) == [200, 200, 429]
        await ann.post(f"/v1/streams/{started['stream_id']}/cancel")
        await bob.post(f"/v1/streams/{other['stream_id']}/cancel")


async def test_a_direct_loopback_client_is_not_limited_by_default(
    make_server: ServerFactory,
) -> None:
    server = make_server(requests_per_minute=2, max_streams_per_user=1)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as local:
        assert await statuses(local, 6) == [200] * 6
        answers = [await ask(local, str(n), assistant="echo", options=STALLED) for n in range(3)]
        for started in answers:
            await local.post(f"/v1/streams/{started['stream_id']}/cancel")

    server = make_server(requests_per_minute=2, limit_loopback=True)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as local:
        assert await statuses(local, 3) == [200, 200, 429]


async def test_forwarded_for_is_believed_only_from_a_trusted_proxy(
    make_server: ServerFactory,
) -> None:
    server = make_server(requests_per_minute=2, trusted_proxies=["127.0.0.2"], limit_loopback=True)
    async with (
        client_from(server.url, "127.0.0.2") as proxy,
        client_from(server.url, "127.0.0.3") as stranger,
    ):
        # From the trusted proxy, each forwarded client has its own limit; the rightmost
        # address counts, not what the client itself put further left.
        first = {"x-forwarded-for": "203.0.113.1"}
        assert await statuses(proxy, 3, **first) == [200, 200, 429]
        forged = {"x-forwarded-for": "203.0.113.9, 203.0.113.1"}
        assert await statuses(proxy, 1, **forged) == [429]
        assert await statuses(proxy, 2, **{"x-forwarded-for": "203.0.113.2"}) == [200, 200]
        # IPv6 clients count by their /64: another address in it is the same client.
        v6 = [{"x-forwarded-for": f"2001:db8:1:2::{n}"} for n in (1, 2, 3)]
        assert [(await proxy.get("/v1/assistants", headers=h)).status_code for h in v6] == [
            200,
            200,
            429,
        ]
        # From any other peer the header is ignored: the peer is the client.
        spoofed = [{"x-forwarded-for": f"198.51.100.{n}"} for n in (1, 2, 3)]
        got = [(await stranger.get("/v1/assistants", headers=h)).status_code for h in spoofed]
        assert got == [200, 200, 429]

    # A forwarded client is never "direct from loopback", even when the proxy is loopback.
    server = make_server(requests_per_minute=1)  # trusted: 127.0.0.1 and ::1 by default
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as local:
        assert await statuses(local, 3) == [200] * 3
        assert await statuses(local, 2, **{"x-forwarded-for": "203.0.113.5"}) == [200, 429]
