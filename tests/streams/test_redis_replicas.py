"""What only a shared broker must do: leases, orphans, dead listeners, Redis outages.

Two :class:`RedisBroker` objects on one Redis are two replicas. Closing one
without finishing its streams is what a crash looks like from Redis: its
heartbeat stops, its leases lapse.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from helpers import free_port
from tcp_proxy import TcpProxy
from typewriter.errors import BrokerUnavailable, StreamTakenOver
from typewriter.streams.redis import RedisBroker

pytestmark = pytest.mark.anyio

LEASE = 1.0  # seconds: the bound within which a dead replica's streams are claimable

Replica = Callable[..., RedisBroker]


@pytest.fixture
async def replica(redis_url: str) -> AsyncIterator[Replica]:
    made: list[RedisBroker] = []

    def make(url: str = redis_url, lease_timeout: float = LEASE) -> RedisBroker:
        broker = RedisBroker(url, lease_timeout=lease_timeout)
        made.append(broker)
        return broker

    yield make
    for broker in made:
        await broker.close()


async def claim_within(broker: RedisBroker, seconds: float) -> list[str]:
    async with asyncio.timeout(seconds):
        while not (orphans := await broker.claim_orphans()):
            await asyncio.sleep(0.05)
    return [o.stream_id for o in orphans]


async def test_a_live_producer_keeps_its_streams(replica: Replica) -> None:
    a, b = replica(), replica()
    sid = await a.create("alice")
    await a.append(sid, "delta", '{"text":"x"}')
    await asyncio.sleep(LEASE * 1.5)  # several renewals
    assert await b.claim_orphans() == []
    assert await b.live([sid, "st_unknown"]) == {sid}


async def test_a_dead_producers_stream_is_claimed_once_with_its_entries(
    replica: Replica,
) -> None:
    a, b, c = replica(), replica(), replica()
    sid = await a.create("alice")
    await a.append(sid, "start", '{"message_id":"msg_1"}')
    await a.append(sid, "delta", '{"text":"partial"}')
    loop = asyncio.get_running_loop()
    assert await b.claim_orphans() == []  # not while the lease is renewed
    died = loop.time()
    await a.close()  # the heartbeat stops, as when the process dies
    orphans = None
    async with asyncio.timeout(LEASE * 3):
        while not orphans:
            orphans = await b.claim_orphans() or await c.claim_orphans()
            await asyncio.sleep(0.05)
    assert loop.time() - died <= LEASE + 0.5
    assert [o.stream_id for o in orphans] == [sid]
    assert [e[1] for e in orphans[0].entries] == ["start", "delta"]
    assert orphans[0].owner == "alice"
    assert await b.claim_orphans() == [] and await c.claim_orphans() == []  # claimed once


async def test_the_claiming_replica_ends_the_stream_and_listeners_see_it(
    replica: Replica,
) -> None:
    a, b = replica(), replica()
    sid = await a.create("alice")
    await a.append(sid, "delta", '{"text":"partial"}')
    listening = await b.subscribe(sid, "alice", 0)
    await a.close()
    assert await claim_within(b, LEASE * 3) == [sid]
    await b.append(sid, "error", '{"code":"interrupted"}')
    await b.finish(sid, '{"finish_reason":"error"}')
    events: list[str] = []
    async with asyncio.timeout(5):
        while (batch := await listening.next(asyncio.get_running_loop().time() + 1)) is not None:
            events += [e[1] for e in batch]
    assert events == ["delta", "error", "end"]
    assert (await b.info(sid, "alice")).finished
    assert await b.live([sid]) == set()


async def test_a_producer_that_lost_its_lease_cannot_write_any_more(replica: Replica) -> None:
    a, b = replica(), replica()
    sid = await a.create("alice")
    await a.append(sid, "delta", '{"text":"1"}')
    a._background.closing.set()  # a stalled replica: its heartbeat stops, the object lives on
    assert await claim_within(b, LEASE * 3) == [sid]
    with pytest.raises(StreamTakenOver):  # at once, or at the next write: before the end
        await a.append(sid, "delta", '{"text":"2"}')
        await a.finish(sid, '{"finish_reason":"stop"}')
    await b.finish(sid, '{"finish_reason":"error"}')
    assert (await b.info(sid, "alice")).last_seq == 2  # delta 1, then b's end; nothing of a's


async def test_listeners_on_a_dead_replica_do_not_hold_an_answer_open(
    replica: Replica,
) -> None:
    producer, listener = replica(), replica()
    sid = await producer.create("alice")
    await listener.subscribe(sid, "alice", 0)  # never closed: its replica dies
    waiting = asyncio.create_task(producer.wait_abandoned(sid, 0.2))
    await asyncio.wait({waiting}, timeout=0.6)
    assert not waiting.done()  # a live listener elsewhere counts
    await listener.close()
    async with asyncio.timeout(LEASE * 3):  # its replica key expires with the lease
        await waiting


async def test_a_cancel_flag_stops_the_producer_without_pub_sub(replica: Replica) -> None:
    a, b = replica(), replica()
    sid = await a.create("alice")
    waiting = asyncio.create_task(a.wait_cancelled(sid))
    abandoned = asyncio.create_task(a.wait_abandoned(sid, 60))  # starts the poller
    await b.redis.set(f"tw:c:{sid}", 1)  # as if the pub/sub message was lost
    async with asyncio.timeout(3):
        await waiting
    abandoned.cancel()


async def test_appends_wait_out_a_short_outage_and_nothing_is_lost(
    replica: Replica, redis_proxy: TcpProxy
) -> None:
    through = replica(f"redis://{redis_proxy.address}/0", lease_timeout=10)
    direct = replica()
    sid = await through.create("alice")
    await through.append(sid, "delta", '{"text":"before"}')
    redis_proxy.cut()
    assert await through.append(sid, "delta", '{"text":"during"}') == 2  # queued, not lost
    finishing = asyncio.create_task(through.finish(sid, '{"finish_reason":"stop"}'))
    await asyncio.wait({finishing}, timeout=1.0)
    assert not finishing.done()  # the end waits for Redis, retrying with backoff
    assert await through.ping() is False
    redis_proxy.restore()
    async with asyncio.timeout(5):
        assert await finishing == 3
    subscription = await direct.subscribe(sid, "alice", 0)
    batch = await subscription.next(asyncio.get_running_loop().time() + 2)
    assert batch is not None
    assert [(e[0], e[2]) for e in batch] == [
        (1, '{"text":"before"}'),
        (2, '{"text":"during"}'),
        (3, '{"finish_reason":"stop"}'),
    ]


async def test_requests_get_a_503_while_redis_is_unreachable(replica: Replica) -> None:
    down = replica(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    assert await down.ping() is False
    with pytest.raises(BrokerUnavailable):
        await down.info("st_x", "alice")
    with pytest.raises(BrokerUnavailable):
        await down.create("alice")


async def test_a_long_outage_ends_listeners_cleanly_so_they_resume(
    replica: Replica, redis_proxy: TcpProxy
) -> None:
    producer = replica()
    through = replica(f"redis://{redis_proxy.address}/0")
    sid = await producer.create("alice")
    await producer.append(sid, "delta", '{"text":"1"}')
    listening = await through.subscribe(sid, "alice", 0)
    loop = asyncio.get_running_loop()
    assert await listening.next(loop.time() + 2)
    redis_proxy.cut()
    try:
        async with asyncio.timeout(10):  # a few seconds of tolerance, then the end
            while (await listening.next(loop.time() + 1)) is not None:
                pass
    finally:
        redis_proxy.restore()
    assert listening.cursor == 1
    await producer.finish(sid, '{"finish_reason":"stop"}')
    resumed = await through.subscribe(sid, "alice", listening.cursor)
    batch = await resumed.next(loop.time() + 3)
    assert batch is not None and [e[1] for e in batch] == ["end"]
