"""The cost of reading an upstream's stream, per chunk: the first step of the relay path.

Every token a model sends is one ``data:`` event the gateway parses
(``models/openai_chunks.read_chunks``: the SSE parser, ``json.loads``, the choice's
fields) before it becomes an event of the answer. This measures that step alone,
in-process, on a body of 20,000 chunks fed in 4 KiB reads, for the shapes real
servers send: plain content (vLLM), reasoning (DeepSeek's ``reasoning_content``),
tool-call fragments and content with ``logprobs`` (OpenAI).

Each source tree runs in its own process (``PYTHONPATH``), the trees alternating,
best of ``--reps`` rounds each; with ``--before-src DIR`` (the ``src`` directory of
an older checkout) the table has both and their ratio, in one run::

    PYTHONPATH=src python benchmarks/bench_chunks.py --before-src /tmp/old/src

A shape the older code does not read (it drops reasoning and tool calls) still
costs its parsing there, so its figure is what reading it costs, not what relaying
it costs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

CHUNKS = 20_000
READ = 4096

SHAPES: dict[str, dict[str, object]] = {
    "content": {"content": " token"},
    "reasoning_content": {"reasoning_content": " think", "content": None},
    "tool-call fragment": {"tool_calls": [{"index": 0, "function": {"arguments": '"ci'}}]},
}


def _body(shape: str) -> bytes:
    choice: dict[str, object] = {"index": 0, "logprobs": None, "finish_reason": None}
    if shape == "content + logprobs":
        choice["delta"] = {"content": " token"}
        token = {"token": " token", "logprob": -0.1, "bytes": [32, 116], "top_logprobs": []}
        choice["logprobs"] = {"content": [token]}
    else:
        choice["delta"] = SHAPES[shape]
    chunk = {"id": "chatcmpl-x", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    event = "data: " + json.dumps({**chunk, "choices": [choice]}) + "\n\n"
    end = 'data: {"choices":[{"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'
    return (event * CHUNKS + end).encode()


def _measure(shape: str, reps: int) -> float:
    """Best µs per chunk of ``reps`` readings (run inside the measured tree's process)."""
    import asyncio
    import time

    import httpx

    from typewriter.models.openai_chunks import read_chunks

    body = _body(shape)
    pieces = [body[i : i + READ] for i in range(0, len(body), READ)]

    async def once() -> float:
        async def arriving():  # type: ignore[no-untyped-def]
            for piece in pieces:
                yield piece

        response = httpx.Response(
            200, headers={"content-type": "text/event-stream"}, content=arriving()
        )
        started = time.perf_counter()
        async for _ in read_chunks(response, 1 << 22):
            pass
        return time.perf_counter() - started

    async def best() -> float:
        return min([await once() for _ in range(reps)])

    return asyncio.run(best()) / CHUNKS * 1e6


def _run(src: str, shape: str, reps: int) -> float:
    env = {**os.environ, "PYTHONPATH": src}
    command = [sys.executable, __file__, "--child", shape, "--reps", str(reps)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return float(done.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before-src", help="the src directory of an older checkout")
    parser.add_argument("--reps", type=int, default=5, help="readings per round (best kept)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per tree")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(f"{_measure(args.child, args.reps):.3f}")
        return
    here = str(Path(__file__).resolve().parents[1] / "src")
    trees = [("now", here)] + ([("before", args.before_src)] if args.before_src else [])
    shapes = [*SHAPES, "content + logprobs"]
    best: dict[tuple[str, str], float] = {}
    for _ in range(args.rounds):
        for shape in shapes:
            for name, src in trees:
                value = _run(src, shape, args.reps)
                best[name, shape] = min(best.get((name, shape), value), value)
    heads = [name for name, _ in trees]
    ratio = len(trees) == 2
    print(
        f"\nµs per chunk read ({CHUNKS:,} chunks, {READ} B reads, best of {args.rounds} rounds)\n"
    )
    print("| shape | " + " | ".join(heads) + (" | now / before |" if ratio else " |"))
    print("|---|" + "---:|" * (len(heads) + ratio))
    for shape in shapes:
        cells = [f"{best[name, shape]:.2f}" for name in heads]
        if ratio:
            cells.append(f"{best['now', shape] / best['before', shape]:.2f}x")
        print(f"| {shape} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
