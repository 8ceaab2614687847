"""Many waiters, few loop timers: listeners' heartbeats and the simulated model's pace.

An idle listener waits for its heartbeat and a simulated stream for its next token; with
a loop timer each, ten thousand listeners held ten thousand timers and a thousand streams
at 20 tokens/s armed twenty thousand a second. Those due in the same slot now share one
(``typewriter.wakeups``). What the user sees must not change: every heartbeat still
comes (never early, at most a slot late), and every answer is still whole and in order.
"""

from __future__ import annotations

import asyncio

import pytest

from typewriter.messages import ChatMessage
from typewriter.models.base import GenerationOptions, ModelRequest, Simulation
from typewriter.models.simulated import SimulatedModel, echo_pieces
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


async def test_simulated_streams_share_their_pacing_timers_and_stay_whole() -> None:
    model = SimulatedModel()
    text = "abcd" * 10
    request = ModelRequest(
        model="echo",
        messages=(ChatMessage("user", text),),
        options=GenerationOptions(simulate=Simulation(tokens_per_second=50.0)),
    )
    streams = 100
    peak = 0

    async def answer() -> str:
        parts = []
        async for chunk in model.stream(request):
            parts.append(chunk.text or "")
        return "".join(parts)

    async def watch() -> None:
        nonlocal peak
        while True:
            peak = max(peak, timers())
            await asyncio.sleep(0.003)

    watcher = asyncio.create_task(watch())
    answers = await asyncio.wait_for(asyncio.gather(*(answer() for _ in range(streams))), 10)
    watcher.cancel()
    assert answers == ["".join(echo_pieces(text))] * streams
    # 100 streams started together are due in the same few milliseconds: one timer
    # per slot (plus the watcher's own), where each stream used to arm its own.
    assert peak <= 10
