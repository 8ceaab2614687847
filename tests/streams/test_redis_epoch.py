"""Redis losing its data, seen by two brokers on one Redis (two replicas, in one process).

The end-to-end cases (real replica processes, HTTP) are in
``tests/faults/test_redis_data_loss.py``; these are the broker's own promises.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from redis_server import RedisServer
from typewriter.streams.base import Entry, Subscription
from typewriter.streams.redis import RedisBroker

pytestmark = pytest.mark.anyio

Replica = Callable[[], RedisBroker]


@pytest.fixture
async def replica(redis_url: str) -> AsyncIterator[Replica]:
    made: list[RedisBroker] = []

    def make() -> RedisBroker:
        broker = RedisBroker(redis_url, lease_timeout=1.0)
        made.append(broker)
        return broker

    yield make
    for broker in made:
        await broker.close()


async def read_all(subscription: Subscription, timeout: float = 10) -> list[Entry]:
    loop = asyncio.get_running_loop()
    entries: list[Entry] = []
    async with asyncio.timeout(timeout):
        while (batch := await subscription.next(loop.time() + 1)) is not None:
            entries.extend(batch)
    return entries


async def test_a_stream_lost_by_redis_is_written_back_and_followers_go_on(
    replica: Replica, redis_server: RedisServer
) -> None:
    a, b = replica(), replica()
    sid = await a.create("alice")
    for i in range(3):
        await a.append(sid, "delta", f'{{"text":"{i}"}}')
    follower = await b.subscribe(sid, "alice", 0)  # on the other replica
    own = await a.subscribe(sid, "alice", 0)  # on the producing one
    loop = asyncio.get_running_loop()
    assert [e[0] for e in await follower.next(loop.time() + 5) or []] == [1, 2, 3]
    redis_server.flush()
    info = await b.info(sid, "alice")  # not 404: the producer writes it back meanwhile
    assert (info.last_seq, info.finished) == (3, False)
    for i in range(3, 5):
        await a.append(sid, "delta", f'{{"text":"{i}"}}')
    await a.finish(sid, "{}")
    assert [e[0] for e in await read_all(follower)] == [4, 5, 6]
    assert [e[0] for e in await read_all(own)] == [1, 2, 3, 4, 5, 6]
    replay = await b.subscribe(sid, "alice", 0)
    assert [e[2] for e in await read_all(replay)][:5] == [f'{{"text":"{i}"}}' for i in range(5)]
