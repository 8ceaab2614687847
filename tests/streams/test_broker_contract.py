"""The broker contract: every backend must pass this very suite.

Parametrized over backends by the ``broker`` fixture, so a new backend is
added by adding its name there, not by writing new tests.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable

import pytest

from typewriter import events
from typewriter.errors import InvalidLastEventId, StreamExpired, StreamNotFound
from typewriter.streams.base import Broker, Entry, Subscription, parse_cursor
from typewriter.streams.memory import MemoryBroker
from typewriter.streams.redis import RedisBroker

pytestmark = pytest.mark.anyio

BrokerFactory = Callable[..., Broker]
BACKENDS = ["memory", "redis"]

# The user's channel carries answer events (events.channel_data): its tests append real ones.
END = events.encode(events.End("stop", "msg_1"))


@pytest.fixture(params=BACKENDS)
async def make_broker(request: pytest.FixtureRequest) -> AsyncIterator[BrokerFactory]:
    made: list[Broker] = []
    redis_url = request.getfixturevalue("redis_url") if request.param == "redis" else None

    def make(retention: float = 600.0) -> Broker:
        broker: Broker
        if redis_url is not None:
            broker = RedisBroker(redis_url, retention=retention, channel_window=50)
        else:
            broker = MemoryBroker(retention=retention, channel_window=50)
        made.append(broker)
        return broker

    yield make
    for broker in made:
        await broker.close()


@pytest.fixture
def broker(make_broker: BrokerFactory) -> Broker:
    return make_broker()


def soon(seconds: float) -> float:
    """A deadline ``seconds`` from now, in event loop time (what ``next`` takes)."""
    return asyncio.get_running_loop().time() + seconds


async def drain(subscription_next: Callable[[float], object], timeout: float = 5.0) -> list[Entry]:
    """Everything until the end of the stream."""
    entries: list[Entry] = []
    async with asyncio.timeout(timeout):
        while True:
            batch = await subscription_next(soon(timeout))  # type: ignore[misc]
            if batch is None:
                return entries
            entries.extend(batch)


def cursor_of(entry: Entry) -> str:
    """A channel entry's cursor, as a client reads it: its SSE ``id:``."""
    [line] = [line for line in entry[3].split(b"\n") if line.startswith(b"id: ")]
    return line[4:].decode()


async def take(subscription: Subscription, count: int) -> list[Entry]:
    """``count`` entries, however the backend batches them (batches are not contractual)."""
    entries: list[Entry] = []
    async with asyncio.timeout(5):
        while len(entries) < count:
            batch = await subscription.next(soon(1))
            assert batch is not None
            entries.extend(batch)
    return entries


async def test_appends_are_numbered_from_one_and_replayed(broker: Broker) -> None:
    sid = await broker.create("alice")
    seqs = [await broker.append(sid, "delta", f'{{"text":"{i}"}}') for i in range(5)]
    await broker.finish(sid, '{"finish_reason":"stop"}')
    assert seqs == [1, 2, 3, 4, 5]
    sub = await broker.subscribe(sid, "alice", 0)
    entries = await drain(sub.next)
    assert [e[0] for e in entries] == [1, 2, 3, 4, 5, 6]
    assert entries[-1][1] == "end"
    assert entries[0][3] == b'id: 1\nevent: delta\ndata: {"text":"0"}\n\n'
    info = await broker.info(sid, "alice")
    assert (info.last_seq, info.finished, info.owner) == (6, True, "alice")


async def test_resume_after_cursor_gives_exactly_the_rest(broker: Broker) -> None:
    sid = await broker.create("alice")
    for i in range(10):
        await broker.append(sid, "delta", f'{{"n":{i}}}')
    await broker.finish(sid, "{}")
    for after in range(0, 11):
        sub = await broker.subscribe(sid, "alice", after)
        entries = await drain(sub.next)
        assert [e[0] for e in entries] == list(range(after + 1, 12))
        await sub.close()


async def test_follow_live_then_end(broker: Broker) -> None:
    sid = await broker.create("alice")
    sub = await broker.subscribe(sid, "alice", 0)
    reader = asyncio.create_task(drain(sub.next))
    for i in range(100):
        await broker.append(sid, "delta", f'{{"n":{i}}}')
        if i % 10 == 0:
            await asyncio.sleep(0)
    await broker.finish(sid, "{}")
    entries = await reader
    assert [e[0] for e in entries] == list(range(1, 102))


async def test_many_listeners_each_get_everything(broker: Broker) -> None:
    sid = await broker.create("alice")
    subs = [await broker.subscribe(sid, "alice", 0) for _ in range(20)]
    readers = [asyncio.create_task(drain(s.next)) for s in subs]
    for i in range(50):
        await broker.append(sid, "delta", f'{{"n":{i}}}')
        await asyncio.sleep(0)
    await broker.finish(sid, "{}")
    for reader in readers:
        assert [e[0] for e in await reader] == list(range(1, 52))


async def test_producer_never_waits_for_a_listener_that_does_not_read(broker: Broker) -> None:
    sid = await broker.create("alice")
    stuck = await broker.subscribe(sid, "alice", 0)
    async with asyncio.timeout(10):
        for i in range(5000):
            await broker.append(sid, "delta", f'{{"n":{i}}}')
        await broker.finish(sid, "{}")
    assert len(await drain(stuck.next)) == 5001


async def test_next_times_out_with_an_empty_batch_and_wake_interrupts(broker: Broker) -> None:
    sid = await broker.create("alice")
    sub = await broker.subscribe(sid, "alice", 0)
    assert await sub.next(soon(0.01)) == []
    waiting = asyncio.create_task(sub.next(soon(60)))
    await asyncio.sleep(0)
    sub.wake()
    async with asyncio.timeout(5):
        assert await waiting == []


async def test_cursor_beyond_the_stream_is_refused(broker: Broker) -> None:
    sid = await broker.create("alice")
    await broker.append(sid, "delta", "{}")
    with pytest.raises(InvalidLastEventId):
        await broker.subscribe(sid, "alice", 2)


@pytest.mark.parametrize("raw", ["abc", "-1", "1" * 30, "1.5", " 1", "+1", "١"])
def test_malformed_cursors_are_refused(raw: str) -> None:
    with pytest.raises(InvalidLastEventId):
        parse_cursor(raw)


def test_cursor_forms_that_mean_a_position() -> None:
    assert parse_cursor(None) == 0
    assert parse_cursor("") == 0
    assert parse_cursor("0") == 0
    assert parse_cursor("42") == 42


async def test_another_owner_sees_nothing(broker: Broker) -> None:
    sid = await broker.create("alice")
    with pytest.raises(StreamNotFound):
        await broker.info(sid, "mallory")
    with pytest.raises(StreamNotFound):
        await broker.subscribe(sid, "mallory", 0)
    with pytest.raises(StreamNotFound):
        await broker.cancel(sid, "mallory")
    with pytest.raises(StreamNotFound):
        await broker.info("st_unknown", "alice")


async def test_finished_stream_expires_after_retention(make_broker: BrokerFactory) -> None:
    broker = make_broker(retention=0.05)
    sid = await broker.create("alice")
    await broker.finish(sid, "{}")
    assert (await broker.info(sid, "alice")).finished
    async with asyncio.timeout(5):
        while True:
            try:
                await broker.info(sid, "alice")
            except StreamExpired:
                break
            await asyncio.sleep(0.02)
    with pytest.raises(StreamExpired):
        await broker.subscribe(sid, "alice", 0)


async def test_cancel_reaches_the_producer(broker: Broker) -> None:
    sid = await broker.create("alice")
    waiting = asyncio.create_task(broker.wait_cancelled(sid))
    await asyncio.sleep(0)
    assert not waiting.done()
    await broker.cancel(sid, "alice")
    async with asyncio.timeout(5):
        await waiting


async def test_abandoned_only_after_grace_with_nobody_listening(broker: Broker) -> None:
    sid = await broker.create("alice")
    sub = await broker.subscribe(sid, "alice", 0)
    abandoned = asyncio.create_task(broker.wait_abandoned(sid, 0.05))
    await asyncio.wait({abandoned}, timeout=0.15)
    assert not abandoned.done(), "abandoned while a listener was attached"
    await sub.close()
    async with asyncio.timeout(5):
        await abandoned


async def test_a_listener_returning_within_grace_keeps_the_stream(broker: Broker) -> None:
    grace = 0.4
    loop = asyncio.get_running_loop()
    sid = await broker.create("alice")
    sub = await broker.subscribe(sid, "alice", 0)
    abandoned = asyncio.create_task(broker.wait_abandoned(sid, grace))
    await sub.close()  # the listener leaves (a dropped connection)...
    left = loop.time()
    await asyncio.wait({abandoned}, timeout=grace / 2)  # ...stays away half the grace...
    sub = await broker.subscribe(sid, "alice", sub.cursor)  # ...and comes back
    assert loop.time() - left < grace, "the listener took longer than the grace to return"
    # Had the departure started a clock that the return did not stop, it would run out
    # here, while the listener is back.
    await asyncio.wait({abandoned}, timeout=grace * 2)
    assert not abandoned.done(), "abandoned although its listener came back within grace"
    await sub.close()
    closed = loop.time()
    async with asyncio.timeout(5):
        await abandoned
    assert loop.time() - closed >= grace * 0.9, "the grace counted from the first departure"


async def test_channel_carries_all_streams_of_its_owner_and_resumes(broker: Broker) -> None:
    channel = await broker.subscribe_channel("alice", None)
    first = await broker.create("alice")
    other = await broker.create("bob")
    second = await broker.create("alice")
    await broker.append(first, "delta", '{"text":"a"}')
    await broker.append(other, "delta", '{"text":"secret"}')
    await broker.append(second, "delta", '{"text":"b"}')
    await broker.finish(first, END)
    batch = await take(channel, 3)
    assert [e[2] for e in batch] == [
        f'{{"stream_id":"{first}","seq":1,"text":"a"}}',
        f'{{"stream_id":"{second}","seq":1,"text":"b"}}',
        f'{{"stream_id":"{first}","seq":2,"finish_reason":"stop","message_id":"msg_1"}}',
    ]
    assert channel.position == cursor_of(batch[-1])
    resumed = await broker.subscribe_channel("alice", cursor_of(batch[0]))
    again = await take(resumed, 2)
    assert [e[2] for e in again] == [e[2] for e in batch[1:]]
    epoch = cursor_of(batch[0]).split("-")[0]
    with pytest.raises(InvalidLastEventId):
        await broker.subscribe_channel("alice", f"{epoch}-999")
    for garbage in ("abc", "1-2-3", "-5", f"{epoch}-"):
        with pytest.raises(InvalidLastEventId):
            await broker.subscribe_channel("alice", garbage)


async def test_a_start_on_the_channel_names_its_stream_once(broker: Broker) -> None:
    channel = await broker.subscribe_channel("alice", None)
    sid = await broker.create("alice")
    start = events.Start(sid, "conv_1", "msg_1", "default", 1700000000)
    await broker.append(sid, start.name, events.encode(start))
    [entry] = await take(channel, 1)
    assert entry[1] == "start"
    assert entry[2] == (
        f'{{"stream_id":"{sid}","seq":1,"conversation_id":"conv_1","message_id":"msg_1",'
        '"model":"default","created":1700000000}'
    )
    assert entry[3] == f"id: {channel.position}\nevent: start\ndata: {entry[2]}\n\n".encode()
    assert channel.position.endswith(f"-{entry[0]}")


async def test_several_channel_listeners_of_a_user_each_get_their_part(broker: Broker) -> None:
    async def answer(text: str) -> None:
        sid = await broker.create("alice")
        await broker.append(sid, "delta", f'{{"text":"{text}"}}')
        await broker.finish(sid, END)

    await answer("0")
    late = await broker.subscribe_channel("alice", None)  # from now on: after cursor 2
    early = await broker.subscribe_channel("alice", "0")  # from before that
    await answer("1")
    assert [e[0] for e in await take(early, 4)] == [1, 2, 3, 4]
    assert early.position.endswith("-4")
    assert [e[0] for e in await take(late, 2)] == [3, 4]
    await late.close()  # one tab closes; the other goes on
    third = await broker.subscribe_channel("alice", early.position)
    await answer("2")
    assert [e[0] for e in await take(early, 2)] == [5, 6]
    assert [e[0] for e in await take(third, 2)] == [5, 6]


async def fill_channel(broker: Broker, count: int) -> str:
    sid = await broker.create("alice")
    for _ in range(count - 1):
        await broker.append(sid, "delta", '{"text":"x"}')
    await broker.finish(sid, END)  # everything appended is visible once finish returns
    return sid


def reset_of(entry: Entry) -> dict[str, str]:
    assert entry[1] == "reset", entry
    fields: dict[str, str] = json.loads(entry[2])
    assert fields["cursor"] == cursor_of(entry)
    return fields


async def test_channel_cursor_older_than_its_window_resets_then_goes_on(broker: Broker) -> None:
    before = await broker.subscribe_channel("alice", None)
    await before.close()
    await fill_channel(broker, 120)  # the window is 50 here
    resumed = await broker.subscribe_channel("alice", before.position.replace("-0", "-1"))
    [reset] = await take(resumed, 1)
    assert reset_of(reset)["reason"] == "window"
    assert reset[0] == 120 and resumed.position == cursor_of(reset)
    await fill_channel(broker, 2)
    assert [e[0] for e in await take(resumed, 2)] == [121, 122]  # live, no gap after it


async def test_a_cursor_of_another_epoch_or_of_before_epochs_resets(broker: Broker) -> None:
    await fill_channel(broker, 3)
    now = await broker.subscribe_channel("alice", None)
    epoch = int(now.position.split("-")[0])
    for old in (f"{epoch - 1}-2", "2", f"{epoch + 1}-1"):
        resumed = await broker.subscribe_channel("alice", old)
        [reset] = await take(resumed, 1)
        assert reset_of(reset) == {"cursor": f"{epoch}-3", "reason": "epoch"}
    from_start = await broker.subscribe_channel("alice", "0")  # "everything you keep"
    assert [e[1] for e in await take(from_start, 3)] == ["delta", "delta", "end"]


async def test_a_connected_listener_that_falls_behind_the_window_gets_a_reset(
    broker: Broker,
) -> None:
    listener = await broker.subscribe_channel("alice", None)
    await fill_channel(broker, 120)  # not read meanwhile: the window moved past it
    [reset] = await take(listener, 1)
    assert reset_of(reset)["reason"] == "window" and reset[0] == 120
    await fill_channel(broker, 1)
    assert [e[0] for e in await take(listener, 1)] == [121]


async def test_ping(broker: Broker) -> None:
    assert await broker.ping() is True


async def test_a_far_behind_listener_catches_up_in_bounded_batches(broker: Broker) -> None:
    sid = await broker.create("alice")
    for i in range(3000):
        await broker.append(sid, "delta", f'{{"n":{i}}}')
    await broker.finish(sid, "{}")
    sub = await broker.subscribe(sid, "alice", 0)
    sizes = []
    while (batch := await sub.next(soon(1))) is not None:
        sizes.append(len(batch))
    assert sum(sizes) == 3001
    assert max(sizes) <= 1024


async def test_waiting_for_abandonment_can_always_be_cancelled(broker: Broker) -> None:
    """A cancel landing as a listener attaches must not be lost (it once hung a generation)."""
    sid = await broker.create("alice")
    waiter = asyncio.create_task(broker.wait_abandoned(sid, 30))
    await asyncio.sleep(0)
    await broker.subscribe(sid, "alice", 0)  # completes the inner wait...
    waiter.cancel()  # ...and the cancel arrives in the same loop iteration
    await asyncio.wait({waiter}, timeout=5)
    assert waiter.cancelled(), "the cancel was swallowed"


async def test_a_reader_that_saw_the_end_finds_the_stream_finished(broker: Broker) -> None:
    """Otherwise a reconnect right after ``end`` would wait instead of getting 204."""
    for _ in range(20):
        sid = await broker.create("alice")
        sub = await broker.subscribe(sid, "alice", 0)
        reader = asyncio.create_task(drain(sub.next))
        await broker.append(sid, "delta", "{}")
        await broker.finish(sid, "{}")
        entries = await reader
        info = await broker.info(sid, "alice")
        assert info.finished and info.last_seq == entries[-1][0] == 2
        await sub.close()


async def test_the_waits_of_a_generation_end_at_once_when_cancelled(broker: Broker) -> None:
    """A generation cancels both waits when it finishes; a stuck wait would hang its ``end``."""
    for _ in range(20):
        sid = await broker.create("alice")
        waits = [
            asyncio.create_task(broker.wait_cancelled(sid)),
            asyncio.create_task(broker.wait_abandoned(sid, 30)),
        ]
        await asyncio.sleep(0.005)
        for task in waits:
            task.cancel()
        await asyncio.wait(waits, timeout=2)
        assert all(task.cancelled() for task in waits), "a wait did not end when cancelled"
