"""The in-process logs and cursors that both brokers read through (``streams/local.py``)."""

from __future__ import annotations

import asyncio
import gc

import pytest

from typewriter import events
from typewriter.streams.base import Entry, encode_entry
from typewriter.streams.local import (
    MAX_BATCH,
    ChannelEntry,
    LocalChannel,
    LocalChannelSubscription,
    LocalLog,
    LocalSubscription,
)

pytestmark = pytest.mark.anyio


def soon(seconds: float) -> float:
    return asyncio.get_running_loop().time() + seconds


def delta(seq: int) -> Entry:
    return encode_entry(seq, "delta", events.encode(events.Delta(str(seq))))


def filled(count: int) -> LocalLog:
    log = LocalLog()
    for seq in range(1, count + 1):
        log.push(delta(seq))
    return log


async def test_a_cursor_gets_exactly_the_entries_after_it() -> None:
    log = filled(10)
    for cursor in range(11):
        sub = LocalSubscription(log, cursor)
        batch = await sub.next(soon(0))
        assert [e[0] for e in batch or []] == list(range(cursor + 1, 11))
        assert sub.cursor == 10


async def test_a_waiting_listener_is_woken_by_the_next_push() -> None:
    log = LocalLog()
    subs = [LocalSubscription(log, 0) for _ in range(3)]
    waiting = [asyncio.create_task(sub.next(soon(60))) for sub in subs]
    await asyncio.sleep(0)  # each is now inside its wait: nothing was pushed yet
    assert len(log.waiters) == 3
    log.push(delta(1))
    async with asyncio.timeout(5):
        batches = await asyncio.gather(*waiting)
    assert [[e[0] for e in b or []] for b in batches] == [[1], [1], [1]]
    assert not log.waiters


async def test_a_deadline_ends_the_wait_and_a_later_push_is_still_delivered() -> None:
    log = LocalLog()
    sub = LocalSubscription(log, 0)
    assert await sub.next(soon(0)) == []  # a deadline already passed: no wait at all
    assert await sub.next(soon(0.01)) == []
    assert not log.waiters  # the wait that timed out left nothing behind
    log.push(delta(1))
    assert [e[0] for e in await sub.next(soon(1)) or []] == [1]


async def test_a_finished_log_hands_out_everything_then_none() -> None:
    log = filled(3)
    sub = LocalSubscription(log, 1)
    log.finished = True
    log.notify()
    assert [e[0] for e in await sub.next(soon(1)) or []] == [2, 3]
    assert await sub.next(soon(1)) is None


async def test_a_listener_far_behind_catches_up_in_bounded_batches() -> None:
    log = filled(MAX_BATCH * 2 + 5)
    log.finished = True
    sub = LocalSubscription(log, 0)
    sizes = []
    while (batch := await sub.next(soon(1))) is not None:
        sizes.append(len(batch))
    assert sizes == [MAX_BATCH, MAX_BATCH, 5]


async def test_closing_wakes_the_listener_and_reports_once() -> None:
    closed: list[int] = []

    async def on_close() -> None:
        closed.append(1)

    sub = LocalSubscription(LocalLog(), 0, on_close)
    waiting = asyncio.create_task(sub.next(soon(60)))
    await asyncio.sleep(0)
    await sub.close()
    await sub.close()
    async with asyncio.timeout(5):
        assert await waiting == []
    assert closed == [1]


async def test_a_cancelled_wait_leaves_the_log_usable() -> None:
    log = LocalLog()
    gone = LocalSubscription(log, 0)
    stays = LocalSubscription(log, 0)
    cancelled = asyncio.create_task(gone.next(soon(60)))
    waiting = asyncio.create_task(stays.next(soon(60)))
    await asyncio.sleep(0)
    cancelled.cancel()
    await asyncio.wait({cancelled})
    log.push(delta(1))
    async with asyncio.timeout(5):
        assert [e[0] for e in await waiting or []] == [1]
    assert cancelled.cancelled()


def channel_event(cursor: int, stream_id: str, seq: int, event: events.AnswerEvent) -> ChannelEntry:
    return (cursor, stream_id, seq, event.name, events.encode(event))


async def test_a_channel_reads_as_the_answers_events_with_their_stream_and_number() -> None:
    channel = LocalChannel(window=10, epoch=7)
    start = events.Start("st_a", "conv_1", "msg_1", "default", 1700000000)
    channel.entries.append(channel_event(1, "st_a", 1, start))
    channel.entries.append(channel_event(2, "st_b", 4, events.Delta("hé")))
    channel.entries.append(channel_event(3, "st_a", 2, events.End("stop", "msg_1")))
    channel.notify()
    batch = await LocalSubscription(channel, 0).next(soon(1))
    assert batch is not None
    assert [(e[0], e[1]) for e in batch] == [(1, "start"), (2, "delta"), (3, "end")]
    assert batch[0][2] == (
        '{"stream_id":"st_a","seq":1,"conversation_id":"conv_1","message_id":"msg_1",'
        '"model":"default","created":1700000000}'
    )
    assert (
        batch[1][3]
        == 'id: 7-2\nevent: delta\ndata: {"stream_id":"st_b","seq":4,"text":"hé"}\n\n'.encode()
    )
    assert batch[2][2] == '{"stream_id":"st_a","seq":2,"finish_reason":"stop","message_id":"msg_1"}'


async def test_a_channel_keeps_a_window_and_a_listener_behind_it_gets_a_reset() -> None:
    channel = LocalChannel(window=3, epoch=7)
    for cursor in range(1, 6):
        channel.entries.append(channel_event(cursor, "st_a", cursor, events.Delta("x")))
    assert channel.first_cursor() == 3
    behind = LocalChannelSubscription(channel, 1)
    [reset] = await behind.next(soon(1)) or []
    assert (reset[0], reset[1], reset[2]) == (5, "reset", '{"cursor":"7-5","reason":"window"}')
    assert reset[3].startswith(b"id: 7-5\nevent: reset\n") and behind.position == "7-5"
    in_window = LocalChannelSubscription(channel, 2)  # the events after 2 are all kept
    assert [e[0] for e in await in_window.next(soon(1)) or []] == [3, 4, 5]
    assert await LocalChannelSubscription(channel, 5).next(soon(0)) == []


async def test_a_channel_that_switches_epoch_resets_its_listeners_to_the_new_one() -> None:
    channel = LocalChannel(window=10, epoch=7)
    channel.entries.append(channel_event(1, "st_a", 1, events.Delta("x")))
    listener = LocalChannelSubscription(channel, 1)
    channel.switch(9, 0)  # what a Redis mirror does when Redis lost its data
    channel.entries.append(channel_event(1, "st_b", 1, events.Delta("y")))
    [reset] = await listener.next(soon(1)) or []
    assert (reset[1], reset[2]) == ("reset", '{"cursor":"9-0","reason":"epoch"}')
    [entry] = await listener.next(soon(1)) or []
    assert entry[3].startswith(b"id: 9-1\n") and listener.position == "9-1"


def test_what_the_logs_keep_is_not_tracked_by_the_garbage_collector() -> None:
    """Retaining millions of events must cost full collections nothing (docs/benchmarks.md)."""
    log = filled(3)
    channel = LocalChannel(window=3, epoch=7)
    channel.entries.append(channel_event(1, "st_a", 1, events.Delta("x")))
    gc.collect()  # CPython stops tracking tuples of atoms when a collection first sees them
    assert not any(gc.is_tracked(entry) for entry in log.entries)
    assert not gc.is_tracked(channel.entries[0])
