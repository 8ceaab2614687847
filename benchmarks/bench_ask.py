"""Scenario: the ask path, ``POST /v1/chat`` one question at a time, SQLite store against none.

An idle server's cost of taking a question: the time from sending ``POST /v1/chat`` to
having the whole response, one ask after another on loopback (a fresh connection each,
as the other scenarios), to a server that keeps conversations in SQLite and one started
with ``database_url = none`` (nothing kept), side by side on core 0. Both modes:

- detached (``202``, the stream named for EventSource): the round trip;
- direct (``Accept: text/event-stream``): the time to the first delta and to ``end``.

Each question starts a new conversation (the path a new chat takes), and then, in direct
mode, follow-ups are asked into one conversation (the path that reads it first). The
simulated ``echo`` answers at its top speed, so every answer is known and checked: the
202's ids, the streamed text, and afterwards, in the store, every question and answer
(``GET /v1/conversations/ID``).

Durability is measured in a separate pass, so its reads cannot bend the round trips: after
each 202 this process reads the SQLite file itself until the question's row is there,
polling a read-only connection of its own, another process than the server (each SELECT
outside a transaction begins a new read, which sees every commit made before it, as a
fresh connection would). That is what proves the row durable: committed to the file,
where a restarted server or any other reader finds it, not just visible to the server
that wrote it. The same pass asks the server for the conversation right after each 202
and requires the question in it (read-your-writes of one server).

Repetitions alternate the two servers (A B A B …) and the medians are reported.
"""

from __future__ import annotations

import asyncio
import functools
import json
import sqlite3
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

from loadgen import Connection, build_request, request
from measure import Outcome, Row, percentile
from servers import Server, raise_nofile, running

__all__ = ["detached", "run"]

_STORE, _NONE = "SQLite store", "no store"
_JSON = {"content-type": "application/json"}
_STREAM = {"content-type": "application/json", "accept": "text/event-stream"}
_SETTINGS = {"TYPEWRITER_BUILTIN_ASSISTANTS": "true"}


def _body(message: str, conversation_id: str | None = None) -> bytes:
    asked = {
        "message": message,
        "assistant": "echo",
        "options": {"simulate": {"tokens_per_second": 100_000}},
    }
    if conversation_id is not None:
        asked["conversation_id"] = conversation_id
    return json.dumps(asked).encode()


@dataclass
class _Pass:
    """One pass of sequential asks: the times (ms) and what was asked, to check afterwards."""

    times: list[float] = field(default_factory=list)
    firsts: list[float] = field(default_factory=list)
    durable: list[float] = field(default_factory=list)
    asked: list[tuple[str, str]] = field(default_factory=list)  # (conversation id, message)
    followed: list[str] = field(default_factory=list)  # the follow-ups' messages, in order
    problems: list[str] = field(default_factory=list)


async def detached(server: Server, asks: int, tag: str) -> _Pass:
    result = _Pass()
    for i in range(asks):
        message = f"{tag} question {i} — 保存 ✓"
        started = time.perf_counter()
        response = await request(server.port, "POST", "/v1/chat", _body(message), _JSON)
        result.times.append((time.perf_counter() - started) * 1000)
        if response.status != 202:
            result.problems.append(f"ask: status {response.status} {response.body()[:200]!r}")
            continue
        result.asked.append((json.loads(response.body())["conversation_id"], message))
    return result


class _Direct(Connection):
    """A ``defer`` connection that notes when the first delta's bytes arrive (a scan of
    the raw bytes until then: the events are parsed after the clock stopped)."""

    def __init__(self, raw: bytes) -> None:
        super().__init__(raw, "defer")
        self.first_delta = 0.0

    def data_received(self, data: bytes) -> None:
        if not self.first_delta and b"event: delta" in data:
            self.first_delta = time.perf_counter()
        super().data_received(data)


async def _direct(server: Server, asks: int, tag: str, *, follow_up: bool = False) -> _Pass:
    """Direct-mode asks; with ``follow_up``, all in one conversation (each after the last
    answer's ``end``), which is the path that reads the conversation first."""
    result = _Pass()
    loop = asyncio.get_running_loop()
    into: str | None = None
    for i in range(asks):
        message = f"{tag} streamed {i} — 保存 ✓"
        body = _body(message, into)
        raw = build_request("POST", "/v1/chat", server.port, body=body, headers=_STREAM)
        started = time.perf_counter()
        _, response = await loop.create_connection(
            functools.partial(_Direct, raw), "127.0.0.1", server.port
        )
        try:
            await response.done
        finally:
            response.close()
        ended = (time.perf_counter() - started) * 1000
        events = response.events()
        text = "".join(json.loads(e.data)["text"] for e in events if e.event == "delta")
        if response.status != 200 or text != message or events[-1].event != "end":
            result.problems.append(f"direct: status {response.status}, text {text[:60]!r}")
            continue
        result.times.append(ended)
        result.firsts.append((response.first_delta - started) * 1000)
        start = next(e for e in events if e.event == "start")
        conversation_id = json.loads(start.data)["conversation_id"]
        if follow_up:
            if into is None:
                result.asked.append((conversation_id, message))
            into = conversation_id
            result.followed.append(message)
        else:
            result.asked.append((conversation_id, message))
    return result


async def _durability(server: Server, asks: int, database: Path) -> _Pass:
    """After each 202: the question's row read from the file by this process, polled until
    there (timed); every other ask first asks the server for the conversation, which must
    hold the question (read-your-writes; those asks are not timed)."""
    result = _Pass()
    reader = sqlite3.connect(f"file:{database}?mode=ro", uri=True, isolation_level=None)
    try:
        for i in range(asks):
            message = f"durable question {i}"
            started = time.perf_counter()
            response = await request(server.port, "POST", "/v1/chat", _body(message), _JSON)
            if response.status != 202:
                result.problems.append(f"ask: status {response.status}")
                continue
            ids = json.loads(response.body())
            if i % 2:  # every other ask: the server's own reading first (read-your-writes)
                path = f"/v1/conversations/{ids['conversation_id']}"
                shown = await request(server.port, "GET", path)
                texts = [m["text"] for m in json.loads(shown.body()).get("messages", [])]
                if shown.status != 200 or message not in texts:
                    result.problems.append(f"read-your-writes: {shown.status} {texts[:2]!r}")
            while True:
                row = reader.execute(
                    "SELECT 1 FROM messages WHERE id = ?", (ids["question_id"],)
                ).fetchone()
                if row is not None:
                    if not i % 2:  # timed only where nothing but this reader waited for it
                        result.durable.append((time.perf_counter() - started) * 1000)
                    break
                if time.perf_counter() - started > 5:
                    result.problems.append("question not in the file after 5 s")
                    break
                await asyncio.sleep(0.0002)
            result.asked.append((ids["conversation_id"], message))
    finally:
        reader.close()
    return result


async def _verify(server: Server, asked: list[tuple[str, str]]) -> list[str]:
    """Every question stored with its whole answer, ended ``done``/``stop``."""
    problems = []
    for conversation_id, message in asked:
        for _ in range(200):  # a detached answer may still be being written
            response = await request(server.port, "GET", f"/v1/conversations/{conversation_id}")
            stored = json.loads(response.body()).get("messages", [])
            if len(stored) == 2 and stored[1]["status"] != "streaming":
                break
            await asyncio.sleep(0.01)
        shape = [(m["role"], m["text"], m["status"]) for m in stored]
        if shape != [("user", message, "done"), ("assistant", message, "done")]:
            problems.append(f"stored: {shape!r}")
    return problems


async def _verify_thread(server: Server, asked: _Pass) -> list[str]:
    """The follow-ups' conversation: every question and its answer, in order."""
    if not asked.followed:
        return []
    path = f"/v1/conversations/{asked.asked and asked.asked[0][0]}"
    response = await request(server.port, "GET", path)
    texts = [m["text"] for m in json.loads(response.body()).get("messages", [])]
    wanted = [text for message in asked.followed for text in (message, message)]
    return [] if texts == wanted else [f"follow-ups stored: {texts[:4]!r}"]


def _ms(values: list[float], q: float) -> float:
    return percentile(sorted(values), q)


async def run(kinds: tuple[str, ...], quick: bool) -> Outcome:
    """Starts its own two servers; ``kinds`` must hold ``typewriter`` (memory broker)."""
    if "typewriter" not in kinds:
        return Outcome()
    asks, repetitions = (200, 3) if quick else (1000, 5)
    figures: dict[str, dict[str, list[float]]] = {_STORE: {}, _NONE: {}}
    problems: list[str] = []
    durable: list[float] = []
    nofile = raise_nofile()
    async with (
        running(("typewriter",), nofile, _SETTINGS) as with_store,
        running(("typewriter",), nofile, {**_SETTINGS, "TYPEWRITER_DATABASE_URL": "none"}) as none,
    ):
        servers = {_STORE: with_store["typewriter"], _NONE: none["typewriter"]}
        for server in servers.values():  # warm up: imports, caches, the first transaction
            await detached(server, 50, "warm-up")
            await _direct(server, 20, "warm-up")
        for repetition in range(repetitions):
            for name, server in servers.items():
                tag = f"r{repetition}"
                asked = await detached(server, asks, tag)
                direct = await _direct(server, asks // 4, tag)
                later = await _direct(server, asks // 8, tag, follow_up=True)
                problems += asked.problems + direct.problems + later.problems
                for metric, values in (
                    ("202 round trip", asked.times),
                    ("direct: first delta", direct.firsts),
                    ("direct: end", direct.times),
                    ("follow-up, direct: first delta", later.firsts),
                    ("follow-up, direct: end", later.times),
                ):
                    for q in (50, 99):
                        figures[name].setdefault(f"{metric} p{q}, ms", []).append(_ms(values, q))
                if name == _STORE:
                    problems += await _verify(server, asked.asked + direct.asked)
                    problems += await _verify_thread(server, later)
        store_server = servers[_STORE]
        assert store_server.data_dir is not None
        database = store_server.data_dir / "typewriter.db"
        checked = await _durability(store_server, asks // 2, database)
        problems += checked.problems + await _verify(store_server, checked.asked)
        durable = checked.durable
        for server in servers.values():
            problems += [f"{server.kind} log: {line}" for line in server.log_problems()[:5]]
    scenario = "sequential asks, new conversations"
    outcome = Outcome(problems=problems[:5])
    for metric in figures[_STORE]:
        medians = {name: statistics.median(table[metric]) for name, table in figures.items()}
        for name, median in medians.items():
            outcome.rows.append(
                Row(
                    scenario,
                    f"{metric}, {name}",
                    {"typewriter": median, "sse-starlette": None},
                    digits=2,
                    higher_is_better=False,
                )
            )
        outcome.rows.append(
            Row(
                scenario,
                f"{metric}: SQLite store / no store",
                {"typewriter": medians[_STORE] / medians[_NONE], "sse-starlette": None},
                digits=2,
                higher_is_better=False,
            )
        )
        outcome.notes.append(
            f"ask, {metric}: SQLite {[round(v, 3) for v in figures[_STORE][metric]]}, "
            f"none {[round(v, 3) for v in figures[_NONE][metric]]}"
        )
    for q in (50, 99):
        outcome.rows.append(
            Row(
                scenario,
                f"ask → question in the SQLite file p{q}, ms",
                {"typewriter": _ms(durable, q), "sse-starlette": None},
                digits=2,
                higher_is_better=False,
            )
        )
    outcome.notes.append(
        f"ask: {asks} detached and {asks // 4} direct asks per repetition, each a new "
        f"conversation, then {asks // 8} direct follow-ups into one conversation, {repetitions} "
        "alternating repetitions per server (median of their percentiles); durability: "
        f"{len(durable)} asks timed until the question's row is in the SQLite file (polled "
        "from this process), as many others read back at once with a GET of the conversation"
    )
    return outcome
