"""Scenario 1: events/s delivered to 1, 10 and 100 listeners of one stream.

One ``echo`` answer of a long message at the simulated model's top speed,
detached; N listeners then read it from event 0 to ``end`` at once. The figure
is every event delivered to every listener over the wall time from the first
connect to the last response's end, median of the repetitions, alternating
which server goes first.

Bodies are kept raw during the clock and parsed afterwards (``defer`` mode):
parsing is slower than the fastest server sends, and a listener that parses
inline would measure this process. Every listener is then verified in full:
ids 1..last exactly once and in order, ``start`` first, ``end`` (stop) last,
and the concatenated deltas equal to the message. A run that fails this is
reported as failed, not counted.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from dataclasses import dataclass

import httpx

from loadgen import Connection, open_request
from measure import CpuWindow, Outcome, Row
from servers import Server

__all__ = ["run"]

_PHRASE = "Server-Sent Events — 流式输出 ✓ typewriter\n"
_SSE_HEADERS = {"accept": "text/event-stream"}


@dataclass
class _Run:
    events: int
    seconds: float
    cpu: CpuWindow
    problems: list[str]

    @property
    def rate(self) -> float:
        return self.events / self.seconds


def _message(chars: int) -> str:
    return (_PHRASE * (chars // len(_PHRASE) + 1))[:chars]


def verify(connection: Connection, message: str) -> tuple[int, str | None]:
    """(events delivered, problem or None) for one listener of one echo answer."""
    error = connection.done.exception()
    if error is not None:
        return 0, f"connection failed: {error}"
    if connection.status != 200:
        return 0, f"HTTP {connection.status}"
    events = connection.events()
    for expected, event in enumerate(events, 1):
        if event.id != str(expected):
            return len(events), f"event #{expected} has id {event.id!r}"
    if not events or events[0].event != "start" or events[-1].event != "end":
        return len(events), "the stream does not go from start to end"
    finish = json.loads(events[-1].data)["finish_reason"]
    if finish != "stop":
        return len(events), f"finish_reason {finish!r}"
    deltas = [e.data for e in events if e.event == "delta"]
    if len(deltas) != len(events) - 2:
        return len(events), "events other than start/delta/end"
    text = "".join(piece["text"] for piece in json.loads("[" + ",".join(deltas) + "]"))
    if text != message:
        return len(events), f"text differs ({len(text)} chars received, {len(message)} sent)"
    return len(events), None


async def _one_run(server: Server, listeners: int, message: str) -> _Run:
    payload = {
        "message": message,
        "assistant": "echo",
        "options": {"simulate": {"tokens_per_second": 100_000}},
    }
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as http:
        answer = await http.post("/v1/chat", json=payload)
    if answer.status_code != 202:
        return _Run(0, 1.0, CpuWindow(server), [f"POST /v1/chat: {answer.status_code}"])
    url = answer.json()["events_url"]
    cpu = CpuWindow(server)
    started = time.perf_counter()
    connections = await asyncio.gather(
        *(open_request(server.port, "GET", url, headers=_SSE_HEADERS) for _ in range(listeners))
    )
    await asyncio.wait([c.done for c in connections], timeout=300)
    seconds = max(c.finished_at or time.perf_counter() for c in connections) - started
    cpu.stop()
    for connection in connections:
        connection.close()
    total, problems = 0, []
    for connection in connections:
        if not connection.done.done():
            problems.append("listener did not finish within 300 s")
            continue
        delivered, problem = verify(connection, message)
        total += delivered
        if problem is not None:
            problems.append(problem)
    return _Run(total, seconds, cpu, problems)


async def run(servers: dict[str, Server], quick: bool) -> Outcome:
    chars = 8_000 if quick else 40_000
    repetitions = 1 if quick else 3
    message = _message(chars)
    outcome = Outcome()
    kinds = list(servers)
    for listeners in (1, 10, 100):
        runs: dict[str, list[_Run]] = {kind: [] for kind in kinds}
        for repetition in range(repetitions):
            order = kinds if repetition % 2 == 0 else kinds[::-1]
            for kind in order:
                runs[kind].append(await _one_run(servers[kind], listeners, message))
        values: dict[str, float | None] = {}
        verified = True
        for kind in kinds:
            problems = [p for r in runs[kind] for p in r.problems]
            verified &= not problems
            outcome.problems += [f"{kind}, {listeners} listeners: {p}" for p in problems[:5]]
            median = statistics.median(r.rate for r in runs[kind])
            values[kind] = median
            middle = min(runs[kind], key=lambda r: abs(r.rate - median))
            outcome.notes.append(
                f"events/s, {listeners} listener(s), {kind}: median {median:,.0f} of "
                f"{[round(r.rate) for r in runs[kind]]}; {middle.events:,} events in "
                f"{middle.seconds * 1000:.0f} ms; {middle.cpu.describe()}"
            )
        label = f"events/s, {listeners} listener{'s' if listeners > 1 else ''}"
        outcome.rows.append(Row("fan-out", label, values, verified=verified))
    outcome.notes.append(
        f"fan-out: one echo answer of {chars:,} chars = {chars // 4:,} deltas + start + end, "
        f"generated at 100,000 tokens/s (so >= {chars / 4 / 100_000 * 1000:.0f} ms per answer: "
        "with few listeners this bounds the figure); median of "
        f"{repetitions}; every listener verified (ids 1..last once, text equal)."
    )
    return outcome
