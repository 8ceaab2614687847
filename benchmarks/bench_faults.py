"""Figures of hostile input and faults: what a server holds while a client or Redis misbehaves.

Two parts, each against a real ``typewriter serve`` process (and, for the
second, a real ``redis-server`` stopped with ``SIGSTOP``):

- ``head``: one connection sends a request head that never ends (64 MiB of
  header lines, then 64 MiB of one header value) while another asks
  ``/healthz`` all along. Figures: bytes sent before the server's first byte of
  answer, its status, the server's VmRSS growth, the worst ``/healthz`` time.
- ``stall``: ``POST /v1/chat`` while Redis is stopped. Figures: the status, how
  long it took, and how many messages the store holds afterwards (the failed
  asks must have recorded nothing).

With ``--before-src DIR`` (the ``src`` directory of an older checkout) each
part runs against that code too, in the same run, for a side-by-side table.

    PYTHONPATH=src python benchmarks/bench_faults.py [--part head|stall] [--before-src DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import httpx

from servers import free_port, rss_kib

MIB = 1 << 20
CHUNK = 64 * 1024
GIVE_UP = 64 * MIB  # bytes sent without an answer: the server is not bounding the head


def rss_mib(pid: int) -> float:
    return rss_kib(pid) / 1024


@asynccontextmanager
async def serving(src: str, data_dir: Path, **settings: str) -> AsyncIterator[tuple[str, int]]:
    """``typewriter serve`` from ``src``; yields its URL and pid."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TYPEWRITER_")}
    env.update(
        PYTHONPATH=src,
        TYPEWRITER_DATA_DIR=str(data_dir),
        TYPEWRITER_LOG_LEVEL="error",
        **{f"TYPEWRITER_{k.upper()}": v for k, v in settings.items()},
    )
    command = [sys.executable, "-m", "typewriter", "serve", "--port", str(port)]
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=url, timeout=5) as http:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if (await http.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise
                await asyncio.sleep(0.1)
        yield url, server.pid
    finally:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


async def endless_head(port: int, head: bytes, filler: bytes) -> tuple[str, int]:
    """Send ``head`` then ``filler`` until the server's first byte (or GIVE_UP bytes):
    the status line it answered (or what happened) and the bytes sent by then."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head)
    sent = len(head)
    first = asyncio.create_task(reader.readline())
    try:
        while sent < GIVE_UP and not first.done():
            writer.write(filler)
            sent += len(filler)
            try:
                await writer.drain()
            except ConnectionError:
                break
            await asyncio.sleep(0)  # drain() does not yield while the socket takes it all
        try:
            line = await asyncio.wait_for(first, 5)
        except (TimeoutError, ConnectionError):
            return "no answer", sent
        return (line.decode("latin-1").strip() or "closed"), sent
    finally:
        first.cancel()
        writer.close()


async def worst_healthz(url: str, until: asyncio.Event) -> float:
    worst = 0.0
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        while not until.is_set():
            began = time.monotonic()
            await http.get("/healthz")
            worst = max(worst, time.monotonic() - began)
            await asyncio.sleep(0.02)
    return worst


async def head_part(src: str) -> list[list[str]]:
    rows = []
    lines = b"".join(b"x-filler-%05d: %s\r\n" % (i, b"v" * 40) for i in range(1200))
    cases = [
        ("header lines", b"GET /healthz HTTP/1.1\r\nhost: x\r\n", lines),
        ("one header value", b"GET /v1/models HTTP/1.1\r\nhost: x\r\nx-value: ", b"a" * CHUNK),
    ]
    with scratch() as data_dir:
        async with serving(src, data_dir) as (url, pid):
            port = int(url.rsplit(":", 1)[1])
            for name, head, filler in cases:
                before = rss_mib(pid)
                done = asyncio.Event()
                latencies = asyncio.create_task(worst_healthz(url, done))
                answered, sent = await endless_head(port, head, filler)
                peak = rss_mib(pid)
                await asyncio.sleep(0.3)
                done.set()
                worst = await latencies
                rows.append(
                    [
                        name,
                        answered,
                        f"{sent / MIB:.2f}",
                        f"{peak - before:+.0f}",
                        f"{worst * 1000:.0f}",
                    ]
                )
    return rows


async def stall_part(src: str) -> list[list[str]]:
    redis_bin = shutil.which("redis-server")
    assert redis_bin, "redis-server is needed for the stall part"
    redis_port = free_port()
    rows = []
    with scratch() as data_dir:
        redis = subprocess.Popen(
            [redis_bin, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", ""],
            cwd=data_dir,
            stdout=subprocess.DEVNULL,
        )
        try:
            broker = f"redis://127.0.0.1:{redis_port}/0"
            async with serving(src, data_dir, broker=broker) as (url, _):
                async with httpx.AsyncClient(base_url=url, timeout=120) as http:
                    messages = count_messages(data_dir)
                    for attempt in range(3):
                        redis.send_signal(signal.SIGSTOP)
                        try:
                            began = time.monotonic()
                            response = await http.post(
                                "/v1/chat", json={"message": f"during a stall {attempt}"}
                            )
                            took = time.monotonic() - began
                        finally:
                            redis.send_signal(signal.SIGCONT)
                        await asyncio.sleep(1)
                        code = response.json().get("error", {}).get("code", "")
                        recorded = count_messages(data_dir) - messages
                        rows.append(
                            [
                                str(attempt + 1),
                                f"{response.status_code} {code}".strip(),
                                f"{took:.2f}",
                                str(recorded),
                            ]
                        )
        finally:
            redis.send_signal(signal.SIGCONT)
            redis.terminate()
            redis.wait(10)
    return rows


def count_messages(data_dir: Path) -> int:
    with sqlite3.connect(data_dir / "typewriter.db") as db:
        (count,) = db.execute("SELECT count(*) FROM messages").fetchone()
        return int(count)


@contextmanager
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="bench-faults-") as name:
        yield Path(name)


def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=False)]
    lines = [" | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    rule = "-+-".join("-" * w for w in widths)
    return "\n".join(
        [" | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)), rule]
    ) + ("\n" + "\n".join(lines) if lines else "")


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--part", choices=["head", "stall"], action="append")
    parser.add_argument("--before-src", help="the src directory of an older checkout")
    args = parser.parse_args()
    parts = args.part or ["head", "stall"]
    sources = [("now", str(Path(__file__).parents[1] / "src"))]
    if args.before_src:
        sources.append(("before", args.before_src))
    if "head" in parts:
        rows = [[which, *row] for which, src in sources for row in await head_part(src)]
        header = ["code", "endless head of", "answer", "MiB sent", "RSS MiB", "worst /healthz ms"]
        print(table(header, rows), end="\n\n")
    if "stall" in parts:
        rows = [[which, *row] for which, src in sources for row in await stall_part(src)]
        header = ["code", "ask", "answer", "seconds", "messages stored (total)"]
        print(table(header, rows))


if __name__ == "__main__":
    asyncio.run(main())
