"""Scenario 6: the token path with the SQLite store against no persistence (typewriter only).

Conversations are saved off the token path: once when an answer starts, every
few seconds while it streams, once when it ends. This checks that claim: the
same load — concurrent ``echo`` answers at the simulated model's top speed,
each asked in direct mode so its own response is its listener — against a
server keeping conversations in SQLite and one with ``database_url = none``,
alternating, median of the repetitions. Every answer is verified in full.

Two figures: the token path alone (deltas arriving while every answer is
streaming, so no answer is being set up or finished) and overall (which also
pays for recording each question and final answer).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time

from loadgen import open_request
from measure import Outcome, Row
from servers import Server, raise_nofile, running
from typewriter import sse

__all__ = ["run"]

_HEADERS = {"accept": "text/event-stream", "content-type": "application/json"}


class _Answer:
    """One direct-mode answer read live: when its deltas arrived, and whether it is whole."""

    def __init__(self) -> None:
        self.arrivals: list[tuple[float, int]] = []
        self.text: list[str] = []
        self.ids: list[int] = []
        self.ended_at: float | None = None

    def on_events(self, events: list[sse.Event], received: float) -> None:
        deltas = 0
        for event in events:
            self.ids.append(int(event.id or 0))
            if event.event == "delta":
                deltas += 1
                self.text.append(json.loads(event.data)["text"])
            elif event.event == "end":
                self.ended_at = received
        if deltas:
            self.arrivals.append((received, deltas))

    def problem(self, message: str) -> str | None:
        if self.ids != list(range(1, len(self.ids) + 1)):
            return "ids not 1..N in order"
        if "".join(self.text) != message or self.ended_at is None:
            return "answer incomplete or altered"
        return None


async def _one_run(server: Server, answers: int, message: str) -> tuple[float, float, list[str]]:
    """(events/s overall, events/s in the window where every answer was streaming, problems)."""
    body = json.dumps(
        {
            "message": message,
            "assistant": "echo",
            "options": {"simulate": {"tokens_per_second": 100_000}},
        }
    ).encode()
    readers = [_Answer() for _ in range(answers)]
    started = time.time()
    connections = await asyncio.gather(
        *(
            open_request(
                server.port,
                "POST",
                "/v1/chat",
                mode="live",
                body=body,
                headers=_HEADERS,
                on_events=reader.on_events,
            )
            for reader in readers
        )
    )
    await asyncio.wait([c.done for c in connections], timeout=300)
    for connection in connections:
        connection.close()
    problems = [p for r in readers if (p := r.problem(message)) is not None]
    if problems:
        return 0.0, 0.0, problems
    total = sum(n for r in readers for _, n in r.arrivals)
    overall = total / (max(r.ended_at or 0.0 for r in readers) - started)
    window_start = max(r.arrivals[0][0] for r in readers)  # every answer has begun
    window_end = min(r.ended_at or 0.0 for r in readers)  # none has finished yet
    inside = sum(n for r in readers for t, n in r.arrivals if window_start <= t <= window_end)
    steady = inside / max(window_end - window_start, 1e-9)
    return overall, steady, []


async def run(kinds: tuple[str, ...], quick: bool) -> Outcome:
    """Starts its own servers (two settings); ``kinds`` must hold ``typewriter`` (memory)."""
    if "typewriter" not in kinds:
        return Outcome()
    answers, chars, repetitions = (10, 8_000, 2) if quick else (20, 80_000, 5)
    message = ("typewriter keeps every answer — 保存 ✓\n" * (chars // 30 + 1))[:chars]
    rates: dict[str, list[float]] = {"SQLite store": [], "no store": []}
    steady: dict[str, list[float]] = {"SQLite store": [], "no store": []}
    problems: list[str] = []
    with tempfile.TemporaryDirectory() as data_dir:
        settings = {
            "SQLite store": {"TYPEWRITER_DATA_DIR": data_dir},
            "no store": {"TYPEWRITER_DATABASE_URL": "none"},
        }
        for _ in range(repetitions):
            for name, env in settings.items():
                async with running(("typewriter",), raise_nofile(), env) as started:
                    rate, window, found = await _one_run(started["typewriter"], answers, message)
                rates[name].append(rate)
                steady[name].append(window)
                problems += found
    scenario = f"{answers} answers x {chars // 4:,} deltas"
    outcome = Outcome(problems=problems[:5])
    for label, table in (("token path (all answers streaming)", steady), ("overall", rates)):
        medians = {name: statistics.median(values) for name, values in table.items()}
        for name, median in medians.items():
            outcome.rows.append(
                Row(
                    scenario,
                    f"events/s {label}, {name}",
                    {"typewriter": median, "sse-starlette": None},
                )
            )
        ratio = medians["SQLite store"] / medians["no store"]
        outcome.rows.append(
            Row(
                scenario,
                f"{label}: SQLite store / no store, %",
                {"typewriter": 100 * ratio, "sse-starlette": None},
                digits=1,
            )
        )
        outcome.notes.append(
            f"store, {label}: SQLite at {ratio:.1%} of no store "
            f"(runs: store {[round(r) for r in table['SQLite store']]}, "
            f"none {[round(r) for r in table['no store']]})"
        )
    outcome.notes.append(
        f"store: {answers} concurrent echo answers of {chars:,} chars in direct mode, "
        f"{repetitions} alternating runs per setting; 'token path' counts the deltas that "
        "arrived while every answer was streaming (after the last first delta, before the "
        "first end), 'overall' includes recording each question and final answer"
    )
    return outcome
