"""Scenario 2: delivery latency with many concurrent streams at 20 events/s each.

Each answer is an ``echo`` with ``simulate.timestamps``: the text of every delta
is the ``time.time()`` at which the model produced it, so receive time minus
that stamp is how long the event spent inside the server (and on loopback).
Streams are started evenly over a ramp, each with its own listener from event 0.

Which deltas count: those stamped after their own listener received its first
bytes ("live" deltas). A delta produced before its listener was there waits
for the connection, not for delivery; and "after all listeners are running"
is no rule at all once the server is saturated, because then new connections
wait in the accept queue for seconds and "all running" comes when the first
streams are already ending. How long that took is reported as its own row,
and "delivered" counts every delta of every stream against the expected total.
Each listener is also checked for ids 1..last in order and ``end: stop``.

The POSTs go through the raw client, not httpx: httpx would use more of this
process's CPU than the measurement can spare while stamps are arriving.
"""

from __future__ import annotations

import asyncio
import json
import time
from array import array
from dataclasses import dataclass, field

from loadgen import open_request, request_json
from measure import CpuWindow, Outcome, Row, percentile
from servers import Server
from typewriter import sse

__all__ = ["run"]


@dataclass
class _Listener:
    """One stream's listener: checks order as events arrive, records stamps and latencies."""

    stamps: array[float] = field(default_factory=lambda: array("d"))
    latencies: array[float] = field(default_factory=lambda: array("d"))
    connected_at: float = 0.0
    expected_id: int = 1
    finish: str | None = None
    problem: str | None = None

    def on_events(self, events: list[sse.Event], received: float) -> None:
        for event in events:
            if event.id != str(self.expected_id) and self.problem is None:
                self.problem = f"expected id {self.expected_id}, got {event.id!r}"
            self.expected_id += 1
            if event.event == "delta":
                stamp = float(json.loads(event.data)["text"])
                self.stamps.append(stamp)
                self.latencies.append(received - stamp)
            elif event.event == "end":
                self.finish = json.loads(event.data)["finish_reason"]

    def live(self) -> list[float]:
        start = self.connected_at
        return [lat for st, lat in zip(self.stamps, self.latencies, strict=True) if st >= start]


@dataclass
class _Result:
    live: list[float]
    everything: list[float]
    all_connected: float
    cpu: CpuWindow
    problems: list[str]


async def _measure(server: Server, streams: int, deltas: int, rate: float, ramp: float) -> _Result:
    payload = {
        "message": "abcd" * deltas,
        "assistant": "echo",
        "options": {"simulate": {"tokens_per_second": rate, "timestamps": True}},
    }
    listeners = [_Listener() for _ in range(streams)]
    loop = asyncio.get_running_loop()
    begin, begin_wall = loop.time(), time.time()
    timeout = ramp + deltas / rate + 120

    async def one(index: int, listener: _Listener) -> None:
        await asyncio.sleep(max(0.0, begin + index * ramp / streams - loop.time()))  # pacing
        status, answer = await request_json(server.port, "POST", "/v1/chat", payload)
        if status != 202:
            raise RuntimeError(f"POST /v1/chat: HTTP {status} {str(answer)[:200]}")
        connection = await open_request(
            server.port,
            "GET",
            answer["events_url"],
            mode="live",
            headers={"accept": "text/event-stream"},
            on_events=listener.on_events,
        )
        try:
            await asyncio.wait_for(asyncio.shield(connection.done), timeout)
        finally:
            listener.connected_at = connection.first_body_at
            connection.close()

    cpu = CpuWindow(server)
    outcomes = await asyncio.gather(
        *(one(i, listener) for i, listener in enumerate(listeners)), return_exceptions=True
    )
    cpu.stop()
    problems = []
    for index, (listener, result) in enumerate(zip(listeners, outcomes, strict=True)):
        if isinstance(result, BaseException):
            problems.append(f"stream {index}: {type(result).__name__}: {result}")
        elif listener.problem or listener.finish != "stop" or len(listener.stamps) != deltas:
            problems.append(
                f"stream {index}: {listener.problem or ''} finish={listener.finish!r} "
                f"deltas={len(listener.stamps)}/{deltas}"
            )
    return _Result(
        live=sorted(lat for listener in listeners for lat in listener.live()),
        everything=sorted(lat for listener in listeners for lat in listener.latencies),
        all_connected=max(listener.connected_at for listener in listeners) - begin_wall,
        cpu=cpu,
        problems=problems,
    )


async def run(servers: dict[str, Server], quick: bool, streams: int = 1000) -> Outcome:
    if quick:
        streams = max(streams // 5, 1)
    deltas, rate, ramp = (100, 20.0, 1.0) if quick else (300, 20.0, 2.0)
    outcome = Outcome()
    results: dict[str, _Result] = {}
    for kind, server in servers.items():
        results[kind] = result = await _measure(server, streams, deltas, rate, ramp)
        outcome.problems += [f"{kind}, {streams} streams: {p}" for p in result.problems[:5]]
        if len(result.problems) > 5:
            outcome.problems.append(f"{kind}: ... {len(result.problems)} streams failed in all")
        outcome.notes.append(
            f"latency, {streams:,} streams, {kind}: {len(result.live):,} live deltas counted; "
            f"over all deltas p50 {percentile(result.everything, 50) * 1000:.1f} ms, "
            f"p99 {percentile(result.everything, 99) * 1000:.1f} ms; {result.cpu.describe()}"
        )
    scenario = f"{streams:,} streams x {rate:g} ev/s"
    verified = all(not r.problems for r in results.values())
    for label, q in (("p50", 50.0), ("p99", 99.0), ("max", 100.0)):
        values: dict[str, float | None] = {
            kind: percentile(r.live, q) * 1000 for kind, r in results.items()
        }
        outcome.rows.append(
            Row(scenario, f"latency {label}, ms", values, 1, verified, higher_is_better=False)
        )
    connected = {kind: r.all_connected for kind, r in results.items()}
    outcome.rows.append(
        Row(scenario, "all listeners connected after, s", connected, 2, higher_is_better=False)
    )
    delivered = {kind: float(len(r.everything)) for kind, r in results.items()}
    expected = streams * deltas
    outcome.rows.append(
        Row(
            scenario,
            f"deltas delivered (of {expected:,})",
            delivered,
            verified=all(v == expected for v in delivered.values()),
        )
    )
    outcome.notes.append(
        f"latency, {streams:,} streams: echo answers of {deltas} deltas at {rate:g}/s "
        f"({deltas / rate:g} s each) started evenly over {ramp:g} s, one listener each; "
        "p50/p99/max over live deltas (stamped after their listener's first bytes)."
    )
    return outcome
