"""The in-process broker's memory budget, on the broker itself.

What is counted is checked against what ``tracemalloc`` sees the process
allocate, so the constants in ``streams.budget`` cannot drift unnoticed; the
rest checks who is dropped, and that a dropped stream is an expired one.
"""

from __future__ import annotations

import asyncio
import gc
import time
import tracemalloc
from collections.abc import AsyncIterator

import pytest

from typewriter import events
from typewriter.errors import RetainedBytesFull, StreamExpired, TooManyRequests
from typewriter.streams.budget import Account, OverBudget, RetainedBudget
from typewriter.streams.memory import MemoryBroker

pytestmark = pytest.mark.anyio

KIB = 1024
END = events.encode(events.End("stop", "msg_1"))


def delta(text: str) -> str:
    return events.encode(events.Delta(text))


@pytest.fixture
async def brokers() -> AsyncIterator[list[MemoryBroker]]:
    made: list[MemoryBroker] = []
    yield made
    for broker in made:
        await broker.close()


def budgeted(made: list[MemoryBroker], total: int, share: int, **kwargs: int) -> MemoryBroker:
    broker = MemoryBroker(max_retained_bytes=total, max_retained_bytes_per_user=share, **kwargs)
    made.append(broker)
    return broker


async def answer(broker: MemoryBroker, owner: str, pieces: int, text: str = "abcd") -> str:
    stream_id = await broker.create(owner)
    for i in range(pieces):
        await broker.append(stream_id, "delta", delta(f"{text}{i % 10}"))
    await broker.finish(stream_id, END)
    return stream_id


async def is_expired(broker: MemoryBroker, stream_id: str, owner: str) -> bool:
    try:
        await broker.info(stream_id, owner)
    except StreamExpired:
        with pytest.raises(StreamExpired):
            await broker.subscribe(stream_id, owner, 0)
        return True
    return False


@pytest.mark.parametrize(
    ("answers", "pieces", "text", "window"),
    [
        (300, 1, "abcd", 10_000),  # many short answers: the per-stream constant
        (10, 200, "abcd", 10_000),  # numbers the interpreter keeps ready (seq <= 256)
        (2, 1000, "abcd", 500),  # typical pieces, the channel window full
        (2, 1000, "x" * 300, 500),  # long pieces
        (2, 1000, "é" * 30, 100),  # text that is not ASCII; a short window
        (2, 1000, "abcd", 0),  # no channel window at all
    ],
)
async def test_counted_bytes_are_what_the_process_allocates(
    brokers: list[MemoryBroker], answers: int, pieces: int, text: str, window: int
) -> None:
    broker = budgeted(brokers, 1 << 40, 1 << 40, channel_window=window)
    await answer(broker, "alice", 1)  # the user's channel and records exist
    gc.collect()
    tracemalloc.start()
    try:
        counted_before = broker.budget.total
        allocated_before = tracemalloc.get_traced_memory()[0]
        for _ in range(answers):
            await answer(broker, "alice", pieces, text)
        gc.collect()
        allocated = tracemalloc.get_traced_memory()[0] - allocated_before
    finally:
        tracemalloc.stop()
    counted = broker.budget.total - counted_before
    assert 0.9 * allocated <= counted <= 1.1 * allocated, (counted, allocated)


async def test_one_user_stays_within_its_share_oldest_answers_dropped_first(
    brokers: list[MemoryBroker],
) -> None:
    broker = budgeted(brokers, 4096 * KIB, 256 * KIB)
    made = [await answer(broker, "alice", 200) for _ in range(40)]  # ~3 MiB worth
    assert broker.budget.user_bytes("alice") <= 256 * KIB
    assert broker.budget.total <= 256 * KIB
    kept = [not await is_expired(broker, s, "alice") for s in made]
    assert kept == sorted(kept), "a newer answer was dropped before an older one"
    assert sum(kept) >= 2 and not kept[0]
    assert broker.budget.dropped == kept.count(False)
    newest = await broker.subscribe(made[-1], "alice", 0)  # whole, from its first event
    batch = await newest.next(time.monotonic())
    assert batch is not None and len(batch) == 201


async def test_another_users_answers_are_not_dropped_for_a_user_over_its_share(
    brokers: list[MemoryBroker],
) -> None:
    broker = budgeted(brokers, 4096 * KIB, 256 * KIB)
    bobs = await answer(broker, "bob", 200)
    for _ in range(40):
        await answer(broker, "alice", 200)
    assert not await is_expired(broker, bobs, "bob")
    assert (await broker.info(bobs, "bob")).last_seq == 201


async def test_over_the_total_the_oldest_finished_answer_of_anyone_goes(
    brokers: list[MemoryBroker],
) -> None:
    broker = budgeted(brokers, 280 * KIB, 260 * KIB)
    bobs = await answer(broker, "bob", 200)  # ~72 KiB, the oldest
    alices = [await answer(broker, "alice", 200) for _ in range(3)]  # ~217 KiB more
    assert broker.budget.total <= 280 * KIB
    assert await is_expired(broker, bobs, "bob")
    assert not any([await is_expired(broker, s, "alice") for s in alices])


async def test_a_running_answer_is_never_dropped_and_is_cut_when_it_alone_fills_the_share(
    brokers: list[MemoryBroker],
) -> None:
    broker = budgeted(brokers, 4096 * KIB, 256 * KIB)
    finished = [await answer(broker, "alice", 100) for _ in range(5)]  # ~185 KiB
    running = await broker.create("alice")
    pieces = 0
    with pytest.raises(OverBudget):
        while True:
            await broker.append(running, "delta", delta(f"abcd{pieces % 10}"))
            pieces += 1
    assert 400 < pieces < 1000  # ~370 bytes a piece; the share refused the next one
    assert all([await is_expired(broker, s, "alice") for s in finished])
    assert (await broker.info(running, "alice")).last_seq == pieces
    assert broker.budget.user_bytes("alice") <= 256 * KIB
    error = events.encode(events.Error("x", "y"))
    await broker.append(running, "error", error)  # the frame of an answer always fits
    subscription = await broker.subscribe(running, "alice", pieces)
    await broker.finish(running, END)
    # Finished while its user is still over the share: dropped at once, but a listener
    # that is reading it reads it to its end.
    assert await is_expired(broker, running, "alice")
    rest = await subscription.next(time.monotonic())
    assert [entry[1] for entry in rest or []] == ["error", "end"]
    assert await subscription.next(time.monotonic()) is None


async def test_new_answers_are_refused_while_running_ones_fill_the_share_or_the_total(
    brokers: list[MemoryBroker],
) -> None:
    broker = budgeted(brokers, 96 * KIB, 64 * KIB)
    alices = await broker.create("alice")
    while broker.budget.user_bytes("alice") < 62 * KIB:
        await broker.append(alices, "delta", delta("abcd"))
    with pytest.raises(TooManyRequests) as refused:
        broker.admit("alice")
    assert refused.value.code == "retained_share_full"
    assert refused.value.headers["retry-after"] == "2"
    broker.admit("bob")
    bobs = await broker.create("bob")
    while broker.budget.total < 94 * KIB:
        await broker.append(bobs, "delta", delta("abcd"))
    with pytest.raises(RetainedBytesFull):
        broker.admit("carol")
    await broker.finish(alices, END)  # finished: droppable, so it no longer stands in the way
    broker.admit("alice")
    broker.admit("carol")


async def test_the_channel_lets_go_of_dropped_streams(brokers: list[MemoryBroker]) -> None:
    """The channel's window would pin the text of dropped streams: it is trimmed with them,
    and a cursor into what was trimmed is told so: a ``reset`` (reason ``window``), never a
    silent skip."""
    broker = budgeted(brokers, 4096 * KIB, 128 * KIB)
    first = await answer(broker, "alice", 10)
    channel = await broker.subscribe_channel("alice", None)
    position = channel.position
    await channel.close()
    for _ in range(30):
        await answer(broker, "alice", 100)
    assert await is_expired(broker, first, "alice")
    assert broker.budget.user_bytes("alice") <= 128 * KIB
    resumed = await broker.subscribe_channel("alice", position)
    try:
        batch = await resumed.next(asyncio.get_running_loop().time() + 2)
        assert batch, "no reset for a cursor into what was trimmed"
        assert batch[0][1] == "reset" and '"reason":"window"' in batch[0][2]
    finally:
        await resumed.close()


async def test_a_user_whose_streams_all_expired_holds_nothing(
    brokers: list[MemoryBroker],
) -> None:
    broker = budgeted(brokers, 4096 * KIB, 1024 * KIB)
    broker.retention = 0.05
    made = [await answer(broker, "alice", 50) for _ in range(5)]
    async with asyncio.timeout(5):
        while not await is_expired(broker, made[-1], "alice"):
            await asyncio.sleep(0.02)
    assert broker.budget.user_bytes("alice") == 0
    assert broker.budget.total == 0
    channel = await broker.subscribe_channel("alice", None)  # still numbered on from before
    assert channel.cursor == 5 * 51


def test_dropping_costs_the_same_whatever_the_number_of_streams() -> None:
    """O(1) per append: the budget's own work for an answer that makes it drop the oldest
    does not grow with the number of streams held (50 times as many: well under twice)."""

    def seconds_per_answer(held: int) -> float:
        budget = RetainedBudget(1 << 40, 1 << 40)
        accounts: dict[str, Account] = {}
        for i in range(held):
            account = accounts[f"st_{i}"] = budget.open(f"st_{i}", f"user{i % 50}", 4000)
            budget.finish(account)
        budget.limit = budget.total  # from now on each answer drops the oldest one
        started = time.perf_counter()
        for i in range(2000):
            account = budget.open(f"new_{i}", "alice", 3000)
            budget.charge(account, 1000)
            budget.finish(account)
            accounts[account.key] = account
            while (victim := budget.victim("alice")) is not None:
                budget.release(accounts.pop(victim))
        return time.perf_counter() - started

    small = min(seconds_per_answer(1_000) for _ in range(2))
    large = min(seconds_per_answer(50_000) for _ in range(2))
    assert large < 2 * small, (small, large)
