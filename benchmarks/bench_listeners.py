"""Idle listeners and the 1,000-stream row, this checkout beside an older one, in one run.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_listeners.py idle --count 5000 \
        --before-src /tmp/before/src [--reps 3]
    PYTHONPATH=src .venv/bin/python benchmarks/bench_listeners.py latency \
        --before-src /tmp/before/src [--reps 3] [--bare] [--profile stacks.txt]

The servers of ``run.py`` (pinned to core 0, the load on core 1), one per source tree
(``--before-src`` is the ``src`` of another checkout, e.g. ``git archive COMMIT src``),
measured in turn, A B A B, so that the other work on a shared machine falls on both.
``idle``: the idle scenario's RSS growth per ``GET /v1/events`` (``bench_idle``), at
``--count`` connections. ``latency``: the latency scenario's 1,000 streams × 20 events/s
(``bench_latency``, every listener verified), with the server's CPU seconds for the
whole part (the same work each time, so less bent by a busy machine than the share); ``--bare``
adds sse-starlette's bare floor, ``--profile`` runs py-spy on this checkout's server
during its first repetition (collapsed stacks, summed by ``profile_server.summarise``).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
from pathlib import Path

import uvloop

import bench_idle
import bench_latency
from measure import percentile
from profile_server import _record, summarise
from servers import BARE, LOAD_CORE, raise_nofile, running, stop_all


def _trees(args: argparse.Namespace) -> dict[str, dict[str, str]]:
    now = str(Path(__file__).resolve().parent.parent / "src")
    common = dict(item.split("=", 1) for item in args.env)
    trees = {"now": {"PYTHONPATH": now, **common}}
    if args.before_src is not None or args.before_env:
        before = str(args.before_src.resolve()) if args.before_src is not None else now
        trees["before"] = {"PYTHONPATH": before, **common}
        trees["before"].update(item.split("=", 1) for item in args.before_env)
    return trees


async def _idle(args: argparse.Namespace, nofile: int) -> None:
    figures: dict[str, list[float]] = {}
    for rep in range(args.reps):
        for name, env in _trees(args).items():
            async with running(("typewriter",), nofile, env) as servers:
                server = servers["typewriter"]
                per, _redis, seconds, problems = await bench_idle._measure(server, args.count)
                figures.setdefault(name, []).append(per)
                print(
                    f"idle {name} rep {rep + 1}: {per:.1f} KiB/connection at {args.count:,} "
                    f"({seconds:.1f} s to open), problems: {problems[:3] or 'none'}",
                    flush=True,
                )
            gc.collect()
    for name, values in figures.items():
        print(f"idle {name}: median {statistics.median(values):.1f} KiB/connection {values}")


async def _latency(args: argparse.Namespace, nofile: int) -> None:
    figures: dict[str, list[tuple[float, float, float, float, float]]] = {}
    kinds: list[tuple[str, dict[str, str] | None]] = list(_trees(args).items())
    if args.bare:
        kinds.append((BARE, None))
    for rep in range(args.reps):
        for name, env in kinds:
            kind = BARE if env is None else "typewriter"
            async with running((kind,), nofile, env) as servers:
                server = servers[kind]
                spy = None
                if args.profile is not None and name == "now" and rep == 0:
                    spy = _record(server.pid, args.seconds, args.profile)
                cpu_before = server.cpu_seconds()
                result = await bench_latency._measure(server, args.streams, 300, 20.0, 2.0)
                cpu_seconds = server.cpu_seconds() - cpu_before
                if spy is not None:
                    spy.wait()
                problems = result.problems + server.log_problems()
            live = result.live
            row = (
                cpu_seconds,
                result.cpu.server_share,
                percentile(live, 50) * 1000,
                percentile(live, 99) * 1000,
                percentile(live, 100) * 1000,
            )
            figures.setdefault(name, []).append(row)
            print(
                f"latency {name} rep {rep + 1}: server CPU {row[0]:.1f} s ({row[1]:.0%}), live "
                f"p50 {row[2]:.1f} / p99 {row[3]:.1f} / max {row[4]:.1f} ms, all connected after "
                f"{result.all_connected:.2f} s; {result.cpu.describe()}; "
                f"{len(problems)} problems: {problems[:3] or 'none'}",
                flush=True,
            )
            gc.collect()
    for name, rows in figures.items():
        seconds, cpu, p50, p99, top = (
            statistics.median(column) for column in zip(*rows, strict=True)
        )
        print(
            f"latency {name}: medians of {len(rows)}: server CPU {seconds:.1f} s ({cpu:.0%}), "
            f"p50 {p50:.1f}, "
            f"p99 {p99:.1f}, max {top:.1f} ms"
        )
    if args.profile is not None:
        print(summarise(args.profile, 30))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("scenario", choices=("idle", "latency"))
    parser.add_argument("--before-src", type=Path, help="the src folder of the older tree")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a TYPEWRITER_* setting for both typewriter servers",
    )
    parser.add_argument(
        "--before-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a TYPEWRITER_* setting for the 'before' server only (alone: this tree with it)",
    )
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--count", type=int, default=5000, help="idle: connections")
    parser.add_argument("--streams", type=int, default=1000, help="latency: streams")
    parser.add_argument("--bare", action="store_true", help="latency: add the bare floor")
    parser.add_argument("--profile", type=Path, help="latency: py-spy stacks to this file")
    parser.add_argument("--seconds", type=float, default=12.0, help="py-spy's duration")
    args = parser.parse_args()
    os.sched_setaffinity(0, {LOAD_CORE})
    nofile = raise_nofile()
    gc.disable()
    scenario = _idle if args.scenario == "idle" else _latency
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(scenario(args, nofile))
    finally:
        stop_all()


if __name__ == "__main__":
    main()
