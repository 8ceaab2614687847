"""Many idle listeners, few loop timers: their heartbeats share timers by slot.

An idle listener waits for its heartbeat; with a loop timer each, ten thousand listeners
held ten thousand timers (about 0.5 KiB each). Those due in the same slot now share one
(``typewriter.wakeups``). What the user sees must not change: every heartbeat still
comes, never early and at most a slot late, and a closed listener is not woken.
"""

from __future__ import annotations

import asyncio

import pytest

from typewriter.streams.local import DEADLINE_RESOLUTION, LocalLog, LocalSubscription

pytestmark = pytest.mark.anyio

LISTENERS = 300


def timers() -> int:
    """Timers armed on the running (plain asyncio) loop."""
    loop = asyncio.get_running_loop()
    return len(loop._scheduled)  # type: ignore[attr-defined]


async def test_idle_listeners_share_their_heartbeat_timers_and_all_wake_on_time() -> None:
    loop = asyncio.get_running_loop()
    log = LocalLog()
    start = loop.time()
    # deadlines spread over 60 ms: a few slots, not 300 timers
    deadlines = [start + 0.1 + 0.06 * i / LISTENERS for i in range(LISTENERS)]
    subscriptions = [LocalSubscription(log, 0) for _ in range(LISTENERS)]
    before = timers()
    waits = [
        asyncio.create_task(sub.next(at)) for sub, at in zip(subscriptions, deadlines, strict=True)
    ]
    await asyncio.sleep(0.02)
    assert timers() - before <= 0.06 / DEADLINE_RESOLUTION + 2
    woken: list[float] = []
    for task in waits:
        assert await asyncio.wait_for(task, 2) == []  # the heartbeat's "nothing new"
        woken.append(loop.time())
    for at, when in zip(deadlines, woken, strict=True):
        assert when >= at - 0.002  # never early (the loop's clock is in milliseconds)
    for sub in subscriptions:
        await sub.close()


async def test_a_closed_listener_is_not_woken_and_a_moved_deadline_still_comes() -> None:
    loop = asyncio.get_running_loop()
    log = LocalLog()
    closed, moved = LocalSubscription(log, 0), LocalSubscription(log, 0)
    first = asyncio.create_task(moved.next(loop.time() + 0.05))
    await asyncio.sleep(0)
    moved.wake()  # woken for another reason before its deadline: [] at once
    assert await asyncio.wait_for(first, 1) == []
    later = loop.time() + 0.2
    again = asyncio.create_task(moved.next(later))
    await closed.close()
    assert await asyncio.wait_for(again, 2) == []
    assert loop.time() >= later - 0.002
    log.push((1, "delta", "{}", b"x"))
    assert await closed.next(loop.time() + 10) == [(1, "delta", "{}", b"x")]
