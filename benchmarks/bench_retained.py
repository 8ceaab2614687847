"""Memory a server keeps for one user's finished answers, with and without the byte budget.

One user asks many long answers in a row (the ``echo`` model, 32,000 characters,
8,000 pieces each: about 3 MB each as the broker counts), reading each to its
end, far beyond the 32 MiB a user may keep by default. The figure is the
``typewriter serve`` process's VmRSS before the flood (after one warm-up answer)
and after it, next to what the broker counts (``typewriter_retained_bytes``).

Rows: the default budget (256 MiB, 32 MiB a user); the budget lifted
(both limits 1 TiB: every answer kept for the retention period, as before the
budget existed); and, with ``--before-src DIR``, the code in
``DIR`` (a ``src`` directory of an older checkout).

    PYTHONPATH=src python benchmarks/bench_retained.py --answers 150
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from servers import free_port, rss_kib

QUESTION = "".join(f"{i:04d}" for i in range(8000))  # echo: 8,000 pieces of 4 characters
FAST = {"simulate": {"tokens_per_second": 100_000}}
TIB = 1 << 40


def rss_mib(pid: int) -> float:
    return rss_kib(pid) / 1024


async def retained_mib(http: httpx.AsyncClient) -> float | None:
    text = (await http.get("/metrics")).text
    found = re.search(r"^typewriter_retained_bytes (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) / 1048576 if found else None


async def answer(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/v1/chat", json={"message": QUESTION, "assistant": "echo", "options": FAST}
    )
    response.raise_for_status()
    tail = b""
    async with http.stream("GET", response.json()["events_url"]) as events:
        async for chunk in events.aiter_bytes():
            tail = (tail + chunk)[-400:]
    assert b"event: end" in tail, tail


async def flood(src: str, answers: int, settings: dict[str, str]) -> tuple[float, float, float]:
    """(RSS before, RSS after, counted after), in MiB."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TYPEWRITER_")}
    env.update(
        PYTHONPATH=src,
        TYPEWRITER_DATA_DIR=tempfile.mkdtemp(prefix="bench-retained-"),
        TYPEWRITER_REQUESTS_PER_MINUTE="1000000",
        TYPEWRITER_LOG_LEVEL="warning",
        **{f"TYPEWRITER_{k.upper()}": v for k, v in settings.items()},
    )
    command = [sys.executable, "-m", "typewriter", "serve", "--port", str(port)]
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=120) as http:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if (await http.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        raise
                await asyncio.sleep(0.1)
            await answer(http)  # imports and caches belong to "before"
            before = rss_mib(server.pid)
            for _ in range(answers):
                await answer(http)
            after = rss_mib(server.pid)
            counted = await retained_mib(http)
            return before, after, counted if counted is not None else float("nan")
    finally:
        server.terminate()
        server.wait(15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--answers", type=int, default=150, help="answers after the warm-up")
    parser.add_argument("--before-src", help="the src directory of an older checkout")
    args = parser.parse_args()
    here = str(Path(__file__).resolve().parent.parent / "src")
    runs = [
        ("budget on (256 MiB, 32 MiB a user)", here, {}),
        (
            "budget lifted (1 TiB)",
            here,
            {"max_retained_bytes": str(TIB), "max_retained_bytes_per_user": str(TIB)},
        ),
    ]
    if args.before_src:
        runs.append(("before the budget", args.before_src, {}))
    print(f"one user, {args.answers} answers of {len(QUESTION):,} characters (echo)\n")
    print(f"| {'server':36} | RSS before | RSS after | growth | counted |")
    print(f"|{'-' * 38}|-----------:|----------:|-------:|--------:|")
    for name, src, settings in runs:
        before, after, counted = asyncio.run(flood(src, args.answers, settings))
        print(
            f"| {name:36} | {before:6.0f} MiB | {after:5.0f} MiB | {after - before:6.0f} "
            f"| {counted:3.0f} MiB |".replace("nan MiB", "  — "),
            flush=True,
        )


if __name__ == "__main__":
    main()
