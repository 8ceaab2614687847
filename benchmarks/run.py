"""Benchmark typewriter (memory and Redis broker) against a FastAPI + sse-starlette server.

    .venv/bin/python benchmarks/run.py            # full run, under 10 minutes
    .venv/bin/python benchmarks/run.py --quick    # smaller smoke run, under 2 minutes
    .venv/bin/python benchmarks/run.py --only fanout,stop
    .venv/bin/python benchmarks/run.py --without-redis   # no redis-server needed

Each scenario gets fresh servers (one of each kind, side by side, pinned to
core 0), so what one scenario leaves behind (retained streams, fragmented
heaps) cannot bend the next; the Redis kind's redis-server (also on core 0) is
emptied with FLUSHALL before each part. This process, the load, runs on core 1
with uvloop and Python's cyclic GC off: a GC pause here would show up as server
latency. The table is printed and written to benchmarks/results.md.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import uvloop

import bench_ask
import bench_fanout
import bench_idle
import bench_latency
import bench_relay
import bench_stop
import bench_store
import bench_upstream
import report
from measure import Outcome
from servers import (
    BARE,
    KINDS,
    LOAD_CORE,
    REDIS,
    REDIS_POOL,
    TYPEWRITER_KINDS,
    RedisServer,
    Server,
    raise_nofile,
    redis_server,
    running,
    stop_all,
)

Scenario = Callable[[dict[str, Server], bool], Awaitable[Outcome]]
#: a scenario that starts its own servers (it needs settings of its own) for these kinds
OwnScenario = Callable[[tuple[str, ...], bool], Awaitable[Outcome]]


@dataclass(frozen=True)
class Part:
    kinds: tuple[str, ...]
    scenario: Scenario | None = None
    own: OwnScenario | None = None


WITHOUT_REDIS = tuple(kind for kind in KINDS if kind != REDIS)

#: name -> parts; each part runs against its own fresh servers.
SCENARIOS: dict[str, list[Part]] = {
    "fanout": [Part(KINDS, bench_fanout.run)],
    "latency": [
        # and the framework's floor beside them: sse-starlette with nothing behind it
        Part((*KINDS, BARE), functools.partial(bench_latency.run, streams=1000)),
        Part(KINDS, functools.partial(bench_latency.run, streams=250)),
        # 1,000 events/s: a load every kind carries on one core, Redis included
        Part(KINDS, functools.partial(bench_latency.run, streams=50)),
    ],
    "idle": [Part(KINDS, bench_idle.run)],
    "stop": [Part(TYPEWRITER_KINDS, bench_stop.run)],
    "upstream": [Part(TYPEWRITER_KINDS, own=bench_upstream.run)],
    # its own gateways: the model server directly, typewriter (memory broker), LiteLLM
    "relay": [Part(("typewriter",), own=bench_relay.run)],
    # memory broker only: at the Redis broker's append rate the store's share of the
    # token path would be lost in Redis's, and 10 runs of 400,000 events would take minutes
    "store": [Part(("typewriter",), own=bench_store.run)],
    "ask": [Part(("typewriter",), own=bench_ask.run)],
}
RESULTS = Path(__file__).resolve().parent / "results.md"


def _arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smaller smoke run (< 2 minutes)")
    parser.add_argument(
        "--without-redis",
        action="store_true",
        help="leave out typewriter on the Redis broker (no redis-server needed)",
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help=f"run only these scenarios (repeat or comma-separate): {', '.join(SCENARIOS)}",
    )
    parser.add_argument(
        "--kinds",
        default="",
        metavar="KIND,...",
        help=f"run only these server kinds (comma-separated): {', '.join((*KINDS, BARE))}",
    )
    parser.add_argument("--output", type=Path, default=RESULTS, help="markdown file to write")
    args = parser.parse_args(argv)
    names = [n.strip() for value in args.only for n in value.split(",") if n.strip()]
    unknown = sorted(set(names) - set(SCENARIOS))
    if unknown:
        parser.error(f"unknown scenario(s) {unknown}; choose from {list(SCENARIOS)}")
    args.names = names or list(SCENARIOS)
    args.kinds = tuple(k.strip() for k in args.kinds.split(",") if k.strip())
    if set(args.kinds) - {*KINDS, BARE}:
        parser.error(f"unknown kind(s) {sorted(set(args.kinds) - {*KINDS, BARE})}")
    return args


async def _redis_note(redis: RedisServer, name: str, cpu_before: float) -> str:
    """What redis-server did during one part: its CPU time and its costliest commands.

    Commands a Lua script runs are counted twice by Redis: in the script's own
    figure (``evalsha``) and again under their names.
    """
    stats = await redis.command_stats()
    top = ", ".join(
        f"{command} {calls:,} x {usec / max(calls, 1):.1f} µs = {usec / 1000:,.0f} ms"
        for command, calls, usec in stats[:5]
    )
    return (
        f"redis-server during {name}: {redis.cpu_seconds() - cpu_before:.1f} s CPU; "
        f"commands by time spent (those inside scripts also count in evalsha): {top or 'none'}"
    )


async def _run_all(
    names: list[str], quick: bool, nofile: int, enabled: tuple[str, ...]
) -> dict[str, Outcome]:
    outcomes: dict[str, Outcome] = {}
    uses_redis = any(REDIS in part.kinds for name in names for part in SCENARIOS[name])
    redis = await redis_server(nofile) if REDIS in enabled and uses_redis else None
    for name in names:
        for index, part in enumerate(SCENARIOS[name]):
            kinds = tuple(kind for kind in part.kinds if kind in enabled)
            started = time.perf_counter()
            print(f"[{name} {index + 1}/{len(SCENARIOS[name])}] running ...", flush=True)
            redis_cpu = redis.cpu_seconds() if redis is not None else 0.0
            if part.own is not None:
                outcome = await part.own(kinds, quick)
            else:
                assert part.scenario is not None
                async with running(kinds, nofile) as servers:
                    outcome = await part.scenario(servers, quick)
                    for server in servers.values():
                        outcome.problems += [
                            f"{server.kind} log: {line}" for line in server.log_problems()[:5]
                        ]
            if redis is not None and REDIS in kinds:
                if redis.process.poll() is not None:
                    outcome.problems.append(f"redis-server exited: {redis.log_tail()}")
                else:
                    outcome.notes.append(await _redis_note(redis, name, redis_cpu))
            outcomes[f"{name}-{index}"] = outcome
            gc.collect()
            print(f"    done in {time.perf_counter() - started:.1f} s", flush=True)
    if redis is not None:  # start-up advice (overcommit, somaxconn) is a note, errors fail
        warnings = sorted({line.partition(" # ")[2][:100] for line in redis.log_lines("WARNING")})
        outcomes["redis-server"] = Outcome(
            notes=[f"redis-server log: {line} ..." for line in warnings],
            problems=[f"redis-server log: {line}" for line in redis.log_lines("rror")[:5]],
        )
    return outcomes


def _source() -> str:
    """Which typewriter was measured: the commit, and whether src/ had uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=RESULTS.parent,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", ":(top)src"],
            capture_output=True,
            text=True,
            cwd=RESULTS.parent,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "typewriter source: not a git checkout"
    return f"typewriter source: git {head}" + (" with uncommitted changes in src/" if dirty else "")


def _redis_version() -> str:
    try:
        found = subprocess.run(
            ["redis-server", "--version"], capture_output=True, text=True, check=False
        )
    except OSError:
        return "redis-server not found"
    words = found.stdout.split()
    version = next((w.removeprefix("v=") for w in words if w.startswith("v=")), "?")
    return f"redis-server {version}"


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # unwinds through the finally blocks that stop the servers


def main(argv: list[str] | None = None) -> int:
    args = _arguments(sys.argv[1:] if argv is None else argv)
    os.sched_setaffinity(0, {LOAD_CORE})
    nofile = raise_nofile()
    signal.signal(signal.SIGTERM, _terminate)
    gc.disable()
    python = os.path.relpath(sys.executable)
    command = shlex.join([python if not python.startswith("..") else sys.executable, *sys.argv])
    enabled = tuple(
        kind
        for kind in (*KINDS, BARE)
        if not (args.without_redis and kind == REDIS) and (not args.kinds or kind in args.kinds)
    )
    started = time.perf_counter()
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            outcomes = runner.run(_run_all(args.names, args.quick, nofile, enabled))
    except KeyboardInterrupt:
        print("interrupted; servers stopped", file=sys.stderr)
        return 130
    finally:
        stop_all()
    context = [
        f"servers pinned to core 0 (taskset -c 0), load generator on core {LOAD_CORE}; "
        f"open-file limit {nofile}",
        "mode: --quick (smaller sizes)" if args.quick else "mode: full",
        _source(),
    ]
    columns: list[report.Column] = ["typewriter"]
    if REDIS in enabled:
        context.append(
            "typewriter (Redis): the same server with TYPEWRITER_BROKER="
            f"redis://127.0.0.1:PORT/0?max_connections={REDIS_POOL}; {_redis_version()} "
            "(no persistence) also pinned to core 0, beside it, so server and redis-server "
            "share one core; emptied (FLUSHALL) before each part"
        )
        columns += [REDIS, report.Ratio(REDIS, "typewriter", "Redis / memory")]
    columns += [
        "sse-starlette",
        report.Ratio("typewriter", "sse-starlette", "memory / sse-starlette"),
    ]
    rows = [row for outcome in outcomes.values() for row in outcome.rows]
    measured = {kind for row in rows for kind in row.values}
    if BARE in measured:
        columns += [BARE, report.Ratio("typewriter", BARE, "memory / bare")]
    if bench_relay.DIRECT in measured:
        columns += [
            bench_relay.DIRECT,
            report.Ratio("typewriter", bench_relay.DIRECT, "memory / direct"),
        ]
    if bench_relay.LITELLM in measured:
        columns += [
            bench_relay.LITELLM,
            report.Ratio("typewriter", bench_relay.LITELLM, "memory / LiteLLM"),
        ]
    text = report.render(outcomes, columns, command, time.perf_counter() - started, context)
    print()
    print(text)
    args.output.write_text(text, encoding="utf-8")
    failed = any(outcome.problems for outcome in outcomes.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
