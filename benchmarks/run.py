"""Benchmark typewriter against a hand-built FastAPI + sse-starlette server.

    .venv/bin/python benchmarks/run.py            # full run, a few minutes
    .venv/bin/python benchmarks/run.py --quick    # smaller smoke run, under a minute
    .venv/bin/python benchmarks/run.py --only fanout,stop

Each scenario gets fresh servers (one of each kind, side by side, pinned to
core 0), so what one scenario leaves behind (retained streams, fragmented
heaps) cannot bend the next. This process, the load, runs on core 1 with uvloop
and Python's cyclic GC off: a GC pause here would show up as server latency.
The table is printed and written to benchmarks/results.md.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import os
import shlex
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import FrameType

import uvloop

import bench_fanout
import bench_idle
import bench_latency
import bench_stop
import bench_store
import bench_upstream
import report
from measure import Outcome
from servers import KINDS, LOAD_CORE, Server, raise_nofile, running, stop_all

Scenario = Callable[[dict[str, Server], bool], Awaitable[Outcome]]
TYPEWRITER_ONLY = ("typewriter",)

#: name -> parts; each part runs against its own fresh servers.
SCENARIOS: dict[str, list[tuple[tuple[str, ...], Scenario]]] = {
    "fanout": [(KINDS, bench_fanout.run)],
    "latency": [
        (KINDS, functools.partial(bench_latency.run, streams=1000)),
        (KINDS, functools.partial(bench_latency.run, streams=250)),
    ],
    "idle": [(KINDS, bench_idle.run)],
    "stop": [(TYPEWRITER_ONLY, bench_stop.run)],
    "upstream": [((), bench_upstream.run)],
    "store": [((), bench_store.run)],
}
RESULTS = Path(__file__).resolve().parent / "results.md"


def _arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smaller smoke run (< 1 minute)")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help=f"run only these scenarios (repeat or comma-separate): {', '.join(SCENARIOS)}",
    )
    parser.add_argument("--output", type=Path, default=RESULTS, help="markdown file to write")
    args = parser.parse_args(argv)
    names = [n.strip() for value in args.only for n in value.split(",") if n.strip()]
    unknown = sorted(set(names) - set(SCENARIOS))
    if unknown:
        parser.error(f"unknown scenario(s) {unknown}; choose from {list(SCENARIOS)}")
    args.names = names or list(SCENARIOS)
    return args


async def _run_all(names: list[str], quick: bool, nofile: int) -> dict[str, Outcome]:
    outcomes: dict[str, Outcome] = {}
    for name in names:
        for index, (kinds, scenario) in enumerate(SCENARIOS[name]):
            started = time.perf_counter()
            print(f"[{name} {index + 1}/{len(SCENARIOS[name])}] running ...", flush=True)
            async with running(kinds, nofile) as servers:
                outcome = await scenario(servers, quick)
                for server in servers.values():
                    outcome.problems += [
                        f"{server.kind} log: {line}" for line in server.log_problems()[:5]
                    ]
            outcomes[f"{name}-{index}"] = outcome
            gc.collect()
            print(f"    done in {time.perf_counter() - started:.1f} s", flush=True)
    return outcomes


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
    started = time.perf_counter()
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            outcomes = runner.run(_run_all(args.names, args.quick, nofile))
    except KeyboardInterrupt:
        print("interrupted; servers stopped", file=sys.stderr)
        return 130
    finally:
        stop_all()
    context = [
        f"servers pinned to core 0 (taskset -c 0), load generator on core {LOAD_CORE}; "
        f"open-file limit {nofile}",
        "mode: --quick (smaller sizes)" if args.quick else "mode: full",
    ]
    text = report.render(
        outcomes, list(KINDS), command, time.perf_counter() - started, context=context
    )
    print()
    print(text)
    args.output.write_text(text, encoding="utf-8")
    failed = any(outcome.problems for outcome in outcomes.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
