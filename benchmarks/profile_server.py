"""Where a typewriter server spends its CPU under one of two loads: py-spy samples it.

    .venv/bin/python benchmarks/profile_server.py relay [--streams 50]   # relaying a model
    .venv/bin/python benchmarks/profile_server.py ask                    # sequential asks
    .venv/bin/python benchmarks/profile_server.py chat                   # the same, /v1/chat

``relay``: the relay benchmark's model server (``relay_upstream.py``) behind typewriter, and
``--streams`` clients asking ``/v1/chat/completions`` answer after answer. ``ask``: one client
asking the simulated ``echo`` through ``/v1/chat/completions``, one answer at a time, so the
samples are the ask path of an idle server. ``chat``: the same through ``POST /v1/chat`` (202,
a new conversation each, kept in SQLite): the path that records the question. Server on core 0,
load on core 1, as in the benchmarks. py-spy (``make bench`` installs it in ``.venv-bench``; it
reads the server's memory, so it runs as root or with ptrace allowed) samples the server for
``--seconds`` while the load runs; the stacks are summed into self time per library and per
function and printed, with the load's own figures (CPU per chunk, time to first token). ``--raw
FILE`` keeps the collapsed stacks.

Coroutine stacks are as py-spy sees them: a resumed coroutine is its own root, so "self
time" is the useful view; asyncio's own scheduling shows as ``Runner.run``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import uvloop

import bench_ask
import bench_relay
from servers import LOAD_CORE, free_port, raise_nofile, running, stop_all

_LIBRARIES = (
    "httpcore", "httpx", "h11", "anyio", "aiohttp", "uvicorn", "starlette", "fastapi",
    "pydantic", "prometheus_client", "sqlalchemy", "json", "asyncio", "contextlib", "threading",
)  # fmt: skip


def _library(frame: str) -> str:
    """``typewriter/x.py`` for typewriter's own modules, else the library's name."""
    where = frame.rpartition(" (")[2]
    path = where.partition(":")[0]
    if path.startswith("typewriter/"):
        return path
    for name in _LIBRARIES:
        if path.startswith(f"{name}/") or f"/{name}/" in path:
            return name
    return "other"


#: Where a relayed answer's time goes, by the frames its samples pass through: the first
#: phase any frame of a stack names takes the sample (order matters: the response loop's
#: stacks also pass through the router).
_PHASES = (
    ("store (its worker thread)", ("aiosqlite", "_connection_worker_thread", "psycopg")),
    (
        "response: wait, translate, send",
        ("EventStreamResponse", "_Translated", "RequestResponseCycle.send", "_send", "sender",
         "watched", "Completion."),
    ),
    (
        "request: parse, route, ask, open upstream",
        ("chat_completions", "solve_dependencies", "OpenAIBackend._open", "connection_made",
         "ClientSession._request", "on_headers_complete", "on_message_complete", "on_url",
         "require_key", "Chat.ask"),
    ),
    (
        "upstream: read and parse chunks",
        ("read_chunks", "_events", "ResponseHandler.data_received", "StreamReader",
         "AsyncStreamIterator", "client_proto"),
    ),
    ("generation: pump, broker append", ("Generation._pump", "MemoryBroker", "LocalLog")),
    ("answer start and end", ("Generation.run", "_stop_requested", "Recorder")),
    ("uvicorn: reading requests", ("httptools_impl", "http_limits")),
)  # fmt: skip


def _phase(stack: str) -> str:
    for name, marks in _PHASES:
        if any(mark in stack for mark in marks):
            return name
    return "event loop and the rest"


def summarise(raw: Path, top: int) -> str:
    """Self time per library and per function from py-spy's collapsed (raw) stacks, and
    the samples by phase of an answer."""
    by_library: collections.Counter[str] = collections.Counter()
    by_function: collections.Counter[str] = collections.Counter()
    by_phase: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        samples = int(count)
        total += samples
        leaf = stack.rpartition(";")[2]
        by_library[_library(leaf)] += samples
        by_function[leaf] += samples
        by_phase[_phase(stack)] += samples
    lines = [f"{total:,} samples (not idle)", "", "samples by phase:"]
    lines += [f"  {n / total:6.1%}  {name}" for name, n in by_phase.most_common()]
    lines += ["", "self time by library:"]
    lines += [f"  {n / total:6.1%}  {name}" for name, n in by_library.most_common(top)]
    lines += ["", "self time by function:"]
    lines += [f"  {n / total:6.1%}  {name}" for name, n in by_function.most_common(top)]
    return "\n".join(lines)


def _py_spy() -> str:
    """py-spy from ``make bench``'s environment, this one's, or the PATH."""
    for candidate in (bench_relay.BENCH_VENV / "bin", Path(sys.executable).parent):
        if (candidate / "py-spy").exists():
            return str(candidate / "py-spy")
    found = shutil.which("py-spy")
    if found is None:
        raise SystemExit("py-spy is not installed: make bench (or pip install py-spy)")
    return found


def _record(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    command = [_py_spy(), "record", "--format", "raw", "--rate", "500", "--nonblocking"]
    command += ["--duration", str(int(seconds)), "--output", str(out), "--pid", str(pid)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def _relay(streams: int, seconds: float, out: Path) -> str:
    nofile = raise_nofile()
    port = free_port()
    command = [sys.executable, str(bench_relay.HERE / "relay_upstream.py"), "--port", str(port)]
    settings = {
        "TYPEWRITER_UPSTREAMS": json.dumps(
            [{"name": "model", "base_url": f"http://127.0.0.1:{port}/v1"}]
        ),
        "TYPEWRITER_ASSISTANTS": json.dumps([{"name": "relay", "model": "relay"}]),
    }
    async with bench_relay.serve_process(command, LOAD_CORE, port, "/healthz") as upstream:
        async with running(("typewriter",), nofile, settings) as servers:
            server = servers["typewriter"]
            raw = bench_relay.completions_request(server.port, "relay")
            await bench_relay.load(server.port, raw, streams, 1, server.pid, upstream.pid)
            answers = max(1, round(seconds * bench_relay.RATE / bench_relay.CHUNKS))
            spy = _record(server.pid, seconds, out)
            result = await bench_relay.load(
                server.port, raw, streams, answers + 1, server.pid, upstream.pid
            )
            spy.wait()
    chunks = sum(a.chunks for a in result.answers)
    firsts = sorted(a.first_text * 1000 for a in result.answers)
    return (
        f"relay, {streams} streams: {len(result.answers)} answers, {chunks:,} chunks in "
        f"{result.wall:.1f} s; server CPU {result.server_cpu / max(chunks, 1) * 1e6:.1f} µs "
        f"per chunk ({result.server_cpu / result.wall:.0%}); first token p50 "
        f"{firsts[len(firsts) // 2]:.2f} ms; problems: {result.problems[:2] or 'none'}"
    )


async def _ask(seconds: float, out: Path) -> str:
    nofile = raise_nofile()
    settings = {"TYPEWRITER_BUILTIN_ASSISTANTS": "true"}
    bench_relay.FIRST_TEXT = b'"content":"g'  # echo answers "go"
    async with running(("typewriter",), nofile, settings) as servers:
        server = servers["typewriter"]
        raw = bench_relay.completions_request(server.port, "echo")
        for _ in range(50):  # warm up
            await bench_relay.ask(server.port, raw)
        spy = _record(server.pid, seconds, out)
        firsts = []
        started = time.perf_counter()
        while time.perf_counter() - started < seconds:
            answer = await bench_relay.ask(server.port, raw)
            firsts.append(answer.first_text * 1000)
        spy.wait()
    firsts.sort()
    return (
        f"ask (sequential, simulated echo): {len(firsts):,} asks in {seconds:g} s; first token "
        f"p50 {firsts[len(firsts) // 2]:.2f} ms, p90 {firsts[int(len(firsts) * 0.9)]:.2f} ms"
    )


async def _chat(seconds: float, out: Path) -> str:
    nofile = raise_nofile()
    async with running(("typewriter",), nofile, {"TYPEWRITER_BUILTIN_ASSISTANTS": "true"}) as up:
        server = up["typewriter"]
        await bench_ask.detached(server, 50, "warm-up")
        spy = _record(server.pid, seconds, out)
        started = time.perf_counter()
        times: list[float] = []
        while time.perf_counter() - started < seconds:
            asked = await bench_ask.detached(server, 20, "profile")
            times += asked.times
        spy.wait()
    times.sort()
    return (
        f"chat (sequential POST /v1/chat, 202, SQLite): {len(times):,} asks in {seconds:g} s; "
        f"round trip p50 {times[len(times) // 2]:.2f} ms, p90 {times[int(len(times) * 0.9)]:.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("load", choices=("relay", "ask", "chat"))
    parser.add_argument("--streams", type=int, default=50, help="relay: concurrent clients")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--raw", type=Path, help="keep py-spy's collapsed stacks here")
    args = parser.parse_args()
    os.sched_setaffinity(0, {LOAD_CORE})
    with tempfile.TemporaryDirectory() as folder:
        out = args.raw or Path(folder) / "stacks.txt"
        try:
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                if args.load == "relay":
                    figures = runner.run(_relay(args.streams, args.seconds, out))
                elif args.load == "chat":
                    figures = runner.run(_chat(args.seconds, out))
                else:
                    figures = runner.run(_ask(args.seconds, out))
        finally:
            stop_all()
        print(figures)
        print()
        print(summarise(out, args.top))


if __name__ == "__main__":
    main()
