"""One change to the relay path, measured: typewriter at two commits, turn about, in one run.

    .venv/bin/python benchmarks/compare_relay.py --base HEAD~1 [--head REV] [--reps 3]

The relay benchmark's model server (``relay_upstream.py``, on the load core) serves both;
each repetition starts typewriter from the base commit's sources and from the working
tree's, one after the other (base first in odd repetitions, the working tree first in even
ones), each alone on the server core, and sends it the same load: ``--streams`` clients
asking ``--answers`` streamed answers each through ``/v1/chat/completions``. Every answer is
checked whole. The medians of the repetitions and the ratio working tree / base are
printed: on a shared machine a ratio taken this way holds where absolute figures drift
between runs. The base's sources come from ``git archive`` into a temporary directory
and are put first on ``PYTHONPATH``; its dependencies are this checkout's ``.venv``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import uvloop

from bench_relay import CHUNKS, HERE, RATE, completions_request, load, serve_process
from measure import percentile
from relay_upstream import answer_text
from servers import LOAD_CORE, free_port, raise_nofile, running, stop_all

ROOT = HERE.parent


def _sources_at(revision: str, into: Path) -> Path:
    """The ``src`` tree of ``revision``, unpacked under ``into``."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", revision, "src"],
        check=True,
        capture_output=True,
    ).stdout
    into.mkdir()
    archive_path = into / "src.tar"
    archive_path.write_bytes(archive)
    with tarfile.open(archive_path) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


async def _measure(
    source: Path, upstream_port: int, upstream_pid: int, streams: int, answers: int
) -> dict[str, float]:
    settings = {
        "PYTHONPATH": str(source),
        "TYPEWRITER_UPSTREAMS": json.dumps(
            [{"name": "model", "base_url": f"http://127.0.0.1:{upstream_port}/v1"}]
        ),
        "TYPEWRITER_ASSISTANTS": json.dumps([{"name": "relay", "model": "relay"}]),
    }
    async with running(("typewriter",), raise_nofile(), settings) as servers:
        server = servers["typewriter"]
        raw = completions_request(server.port, "relay")
        result = await load(server.port, raw, streams, answers, server.pid, upstream_pid)
    expected = answer_text(CHUNKS)
    wrong = [a for a in result.answers if a.text != expected]
    if result.problems or wrong or len(result.answers) != streams * answers:
        raise SystemExit(f"{source}: {result.problems[:3]}, {len(wrong)} answers not whole")
    chunks = sum(a.chunks for a in result.answers)
    first = sorted(a.first_text * 1000 for a in result.answers)
    return {
        "server CPU per relayed chunk, µs": result.server_cpu / chunks * 1e6,
        "chunks delivered per second": chunks / result.wall,
        "time to first token p50, ms": percentile(first, 50.0),
        "time to first token p99, ms": percentile(first, 99.0),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="HEAD~1", help="the commit compared against")
    parser.add_argument("--head", help="a commit instead of the working tree")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--streams", type=int, default=50)
    parser.add_argument("--answers", type=int, default=4, help="answers per client")
    args = parser.parse_args()
    trees = {"base": Path(), "working tree": ROOT / "src"}
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
    with tempfile.TemporaryDirectory(prefix="tw-compare-") as scratch:
        trees["base"] = _sources_at(args.base, Path(scratch) / "base")
        if args.head is not None:
            trees["working tree"] = _sources_at(args.head, Path(scratch) / "head")
        upstream_port = free_port()
        command = [sys.executable, str(HERE / "relay_upstream.py"), "--port", str(upstream_port)]
        command += ["--chunks", str(CHUNKS), "--rate", str(RATE)]
        try:
            async with serve_process(command, LOAD_CORE, upstream_port, "/healthz") as upstream:
                for rep in range(args.reps):
                    order = list(trees) if rep % 2 == 0 else list(reversed(trees))
                    for name in order:
                        figures = await _measure(
                            trees[name], upstream_port, upstream.pid, args.streams, args.answers
                        )
                        runs[name].append(figures)
                        shown = ", ".join(f"{v:.1f}" for v in figures.values())
                        print(f"rep {rep + 1} {name}: {shown}", flush=True)
        finally:
            stop_all()
    print(
        f"\nrelay, {args.streams} streams × {args.answers} answers × {CHUNKS} chunks, "
        f"median of {args.reps}; base = {args.base}, head = {args.head or 'working tree'}\n"
    )
    print("| metric | base | working tree | ratio |\n|---|---:|---:|---:|")
    for metric in runs["base"][0]:
        base = statistics.median(r[metric] for r in runs["base"])
        head = statistics.median(r[metric] for r in runs["working tree"])
        print(f"| {metric} | {base:,.1f} | {head:,.1f} | {head / base:.2f}× |")


if __name__ == "__main__":
    uvloop.run(main())
