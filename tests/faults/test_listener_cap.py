"""One user cannot hold unlimited event listeners: at ``max_listeners_per_user`` a new
listener replaces the user's oldest, an older one of the same stream first.

A real server with two users made by the real CLI; listeners are real HTTP responses
read byte by byte, so a replaced one is seen to end the way a client sees it.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import RunningServer, ServerFactory
from helpers import add_user
from typewriter import sse

pytestmark = pytest.mark.anyio

REPLACED = b": replaced"
STALLING = {"options": {"simulate": {"stall_after_tokens": 1}}}  # runs until stopped


@dataclass
class Users:
    data_dir: Path
    alice: str
    bob: str


@pytest.fixture(scope="module")
def users(tmp_path_factory: pytest.TempPathFactory) -> Users:
    data_dir = tmp_path_factory.mktemp("listeners")
    return Users(data_dir, add_user(data_dir, "alice"), add_user(data_dir, "bob"))


@dataclass
class Listening:
    """One open event response, read as raw bytes (comments included)."""

    response: httpx.Response
    received: bytes = b""
    chunks: AsyncIterator[bytes] = field(init=False)

    def __post_init__(self) -> None:
        self.chunks = self.response.aiter_bytes()

    async def until(self, wanted: bytes, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while wanted not in self.received:
                self.received += await anext(self.chunks)

    async def to_end(self, timeout: float = 10.0) -> bytes:
        """Everything up to the end of the body; raises if the body does not end in time."""
        async with asyncio.timeout(timeout):
            async for chunk in self.chunks:
                self.received += chunk
        return self.received

    async def alive(self) -> bool:
        """A heartbeat still arrives: the response is open."""
        try:
            async with asyncio.timeout(5.0):
                self.received += await anext(self.chunks)
        except StopAsyncIteration:
            return False
        return True

    def last_id(self) -> str:
        ids = [e.id for e in sse.Parser().feed(self.received) if e.id]
        assert ids, self.received
        return ids[-1]


async def listen(
    stack: AsyncExitStack, client: httpx.AsyncClient, url: str, **headers: str
) -> Listening:
    response = await stack.enter_async_context(client.stream("GET", url, headers=headers))
    assert response.status_code == 200, await response.aread()
    return Listening(response)


def key(api_key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {api_key}"}


async def stalled_stream(client: httpx.AsyncClient) -> str:
    response = await client.post("/v1/chat", json={"message": "hold", **STALLING})
    assert response.status_code == 202, response.text
    stream_id: str = response.json()["stream_id"]
    return stream_id


def server_with(make_server: ServerFactory, users: Users, **settings: Any) -> RunningServer:
    return make_server(data_dir=users.data_dir, heartbeat=0.2, **settings)


async def test_at_the_cap_a_new_listener_replaces_the_oldest(
    make_server: ServerFactory, users: Users
) -> None:
    server = server_with(make_server, users, max_listeners_per_user=3)
    async with (
        httpx.AsyncClient(base_url=server.url, headers=key(users.alice), timeout=30) as alice,
        AsyncExitStack() as stack,
    ):
        streams = [await stalled_stream(alice) for _ in range(4)]
        held = []
        for stream_id in streams[:3]:
            listening = await listen(stack, alice, f"/v1/streams/{stream_id}/events")
            await listening.until(b"event: delta")
            held.append(listening)
        fourth = await listen(stack, alice, f"/v1/streams/{streams[3]}/events")

        ended = await held[0].to_end()  # ends normally: no exception, no error event
        assert ended.rstrip().endswith(
            REPLACED + b": a newer listener of this user passed max_listeners_per_user"
        ), ended[-200:]
        assert b"event: error" not in ended
        await fourth.until(b"event: delta")
        assert await held[1].alive() and await held[2].alive()
        assert await settled_count(server) == 3


async def test_a_reconnect_replaces_the_stale_listener_of_its_stream_first(
    make_server: ServerFactory, users: Users
) -> None:
    server = server_with(make_server, users, max_listeners_per_user=3)
    async with (
        httpx.AsyncClient(base_url=server.url, headers=key(users.alice), timeout=30) as alice,
        AsyncExitStack() as stack,
    ):
        streams = [await stalled_stream(alice) for _ in range(3)]
        held = []
        for stream_id in streams:
            listening = await listen(stack, alice, f"/v1/streams/{stream_id}/events")
            await listening.until(b"event: delta")
            held.append(listening)
        stale = held[1]  # not the oldest: that is held[0]
        resumed = await listen(
            stack, alice, f"/v1/streams/{streams[1]}/events", **{"last-event-id": stale.last_id()}
        )

        assert REPLACED in await stale.to_end()
        assert await held[0].alive() and await held[2].alive()
        assert await resumed.alive()
        assert await settled_count(server) == 3


async def test_another_user_is_not_affected(make_server: ServerFactory, users: Users) -> None:
    server = server_with(make_server, users, max_listeners_per_user=3)
    async with (
        httpx.AsyncClient(base_url=server.url, headers=key(users.alice), timeout=30) as alice,
        httpx.AsyncClient(base_url=server.url, headers=key(users.bob), timeout=30) as bob,
        AsyncExitStack() as stack,
    ):
        bobs = [await listen(stack, bob, "/v1/events") for _ in range(3)]
        alices = [await listen(stack, alice, "/v1/events") for _ in range(4)]

        assert REPLACED in await alices[0].to_end()
        for listening in [*bobs, *alices[1:]]:
            assert await listening.alive()
        assert await settled_count(server) == 6


async def test_a_direct_answer_is_neither_counted_nor_replaced(
    make_server: ServerFactory, users: Users
) -> None:
    server = server_with(make_server, users, max_listeners_per_user=1)
    async with (
        httpx.AsyncClient(base_url=server.url, headers=key(users.alice), timeout=30) as alice,
        AsyncExitStack() as stack,
    ):
        response = await stack.enter_async_context(
            alice.stream(
                "POST",
                "/v1/chat",
                json={"message": "direct", **STALLING},
                headers={"accept": "text/event-stream"},
            )
        )
        assert response.status_code == 200
        direct = Listening(response)
        await direct.until(b"event: delta")
        first = await listen(stack, alice, "/v1/events")
        second = await listen(stack, alice, "/v1/events")

        assert REPLACED in await first.to_end()
        assert await direct.alive() and await second.alive()
        assert await settled_count(server) == 2


async def healthz_p50(client: httpx.AsyncClient, rounds: int = 40) -> float:
    timings = []
    for _ in range(rounds):
        started = time.perf_counter()
        response = await client.get("/healthz")
        timings.append(time.perf_counter() - started)
        assert response.status_code == 200
    return statistics.median(timings)


async def settled_count(server: RunningServer) -> int:
    """The open responses once the replaced ones had a moment to finish closing."""
    count = len(server.gateway.open_streams)
    for _ in range(50):
        await asyncio.sleep(0.05)
        if len(server.gateway.open_streams) == count:
            return count
        count = len(server.gateway.open_streams)
    return count


FAST_ANSWER = {"options": {"max_tokens": 600, "simulate": {"tokens_per_second": 300}}}


async def test_one_user_opening_many_listeners_holds_the_cap_and_healthz_stays_fast(
    make_server: ServerFactory, users: Users
) -> None:
    """Every listener of the channel gets every event of the user's answers: held
    listeners multiply the server's work per event, which is what the cap bounds."""
    server = make_server(data_dir=users.data_dir)  # the default cap
    cap = server.gateway.settings.max_listeners_per_user
    many = 5 * cap
    pool = httpx.Limits(max_connections=many + 10, max_keepalive_connections=many + 10)
    async with (
        httpx.AsyncClient(base_url=server.url, timeout=30) as probe,
        httpx.AsyncClient(
            base_url=server.url, headers=key(users.alice), timeout=60, limits=pool
        ) as alice,
        AsyncExitStack() as stack,
    ):
        response = await alice.post("/v1/chat", json={"message": "warm up", **FAST_ANSWER})
        assert response.status_code == 202
        before = await healthz_p50(probe)
        for _ in range(many):
            await listen(stack, alice, "/v1/events")
        held = await settled_count(server)
        response = await alice.post("/v1/chat", json={"message": "fan out", **FAST_ANSWER})
        assert response.status_code == 202
        during = await healthz_p50(probe)
        print(
            f"healthz p50: {before * 1000:.2f} ms during an answer with no listener, "
            f"{during * 1000:.2f} ms with {many} listeners opened ({held} held)"
        )
        assert held == cap
        assert during < max(10 * before, 0.05)
