"""The servers under test: started as subprocesses on core 0, stopped no matter what.

Each runs in its own process, pinned with ``taskset -c 0`` while this process
(the load) runs on core 1, so neither steals CPU from the other and the server's
own CPU time (``/proc/PID/task/*/schedstat``) says how busy it was. Readiness is polled on
``/healthz``, never guessed with a sleep. Logs go to an anonymous temporary file
(nothing is left on disk) and are scanned for tracebacks afterwards.

Three kinds: ``typewriter`` (the in-process memory broker), ``typewriter+redis``
(the same server with ``TYPEWRITER_BROKER=redis://…``) and ``sse-starlette``.
The Redis kind's redis-server is started here too, once per run, on the server
core beside the typewriter it serves (one core for the whole server side, as a
deployment that co-locates them would have), with no persistence and its files
in a temporary directory that is removed afterwards. Every part that runs the
Redis kind starts from ``FLUSHALL`` and zeroed statistics, so what one scenario
left in Redis cannot bend the next.

The Redis kind's broker URL carries ``?max_connections=``: redis-py 8's asyncio
pool stops at 100 connections by default, and the broker holds one per
followed stream and one per channel listener (blocking ``XREAD``), so 1,000
streams or 5,000 idle listeners would fail with ``Too many connections``.

Each typewriter server keeps its conversations (SQLite) in a temporary
directory of its own, removed when it stops: two servers of one part never
share a database file, and no run reads a file an earlier run has grown.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from loadgen import HttpError, request

__all__ = [
    "BARE",
    "KINDS",
    "LOAD_CORE",
    "REDIS",
    "REDIS_POOL",
    "SERVER_CORE",
    "TYPEWRITER_KINDS",
    "RedisServer",
    "Server",
    "free_port",
    "raise_nofile",
    "redis_server",
    "rss_kib",
    "running",
    "stop_all",
]

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
REDIS = "typewriter+redis"
REDIS_POOL = 10_000  # the broker's redis-py pool size; see the module docstring
TYPEWRITER_KINDS = ("typewriter", REDIS)  # the same server, memory broker and Redis broker
KINDS = (*TYPEWRITER_KINDS, "sse-starlette")
BARE = "sse-starlette (bare)"  # the framework's floor (sse_starlette_bare.py): latency only
_UNLIMITED = {
    "TYPEWRITER_MAX_STREAMS_PER_USER": "1000000",
    "TYPEWRITER_REQUESTS_PER_MINUTE": "100000000",
    "TYPEWRITER_MAX_LISTENERS_PER_USER": "100000000",
    "TYPEWRITER_MAX_MESSAGE_CHARS": "100000000",
    "TYPEWRITER_MAX_ANSWER_CHARS": "1000000000",
    # The benchmarks are one user: its share of the in-process broker's memory, and the
    # connection cap (lowered to the descriptor limit anyway), must not shape the figures.
    "TYPEWRITER_MAX_RETAINED_BYTES": str(1 << 40),
    "TYPEWRITER_MAX_RETAINED_BYTES_PER_USER": str(1 << 40),
    "TYPEWRITER_MAX_CONNECTIONS": "1000000",
}
SERVER_CORE = 0
LOAD_CORE = 1
_PR_SET_PDEATHSIG = 1
_STARTED: list[Server] = []  # every server ever started, for stop_all() on the way out
_REDIS: list[RedisServer] = []  # the run's redis-server, started on first use


def raise_nofile(wanted: int = 65536) -> int:
    """Raise this process's open-file limit as far as allowed; children inherit it.

    Without CAP_SYS_RESOURCE (containers) the hard limit cannot be raised, so we
    settle for the hard limit and return what we got.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for target in (wanted, hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, max(target, hard)))
            return target
        except (ValueError, OSError):
            continue
    return soft


def rss_kib(pid: int) -> int:
    """VmRSS from /proc: the resident memory the kernel charges to a process."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """CPU time a process's threads have run so far (schedstat: ns, not 10 ms ticks)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):  # a thread may end while we look
            total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


class RedisServer:
    """A throwaway redis-server on loopback: no persistence, files in a temporary directory.

    Pinned to the server core beside the typewriter it serves; under the same
    open-file limit as the servers (its ``maxclients`` follows it), so 5,000
    idle listeners, each with its own blocking ``XREAD`` connection, fit.
    """

    def __init__(self, nofile: int) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(
                "redis-server not found: install it (Debian: apt-get install redis-server) "
                "or run with --without-redis"
            )
        self.dir = Path(tempfile.mkdtemp(prefix="tw-bench-redis-"))
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log = tempfile.TemporaryFile()
        # fmt: off
        serve = [
            binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(self.dir), "--protected-mode", "yes",
        ]
        # fmt: on
        pin = ["taskset", "-c", str(SERVER_CORE)]
        self.process = subprocess.Popen(
            ["prlimit", f"--nofile={nofile}:{nofile}", *pin, *serve],
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        _REDIS.append(self)

    @property
    def pid(self) -> int:
        return self.process.pid

    def rss_kib(self) -> int:
        return rss_kib(self.pid)

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    async def command(self, *args: str) -> object:
        """One command on a fresh connection (only between measurements)."""
        client = aioredis.Redis(port=self.port)
        try:
            return await client.execute_command(*args)
        finally:
            await client.aclose()

    async def ready(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited at start: {self.log_tail()}")
            try:
                if await self.command("PING"):
                    break
            except (OSError, RedisConnectionError):
                pass  # not listening yet
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not answer PING in {timeout} s")
            await asyncio.sleep(0.02)  # poll interval, not a readiness guess
        affinity = os.sched_getaffinity(self.pid)
        if affinity != {SERVER_CORE}:
            raise RuntimeError(f"redis-server (pid {self.pid}) runs on cores {affinity}")

    async def reset(self) -> None:
        """Empty, with zeroed statistics: a part starts from a Redis nobody has used."""
        await self.command("FLUSHALL", "SYNC")
        await self.command("CONFIG", "RESETSTAT")
        size = await self.command("DBSIZE")
        if size != 0:
            raise RuntimeError(f"redis-server still holds {size} keys after FLUSHALL")

    async def command_stats(self) -> list[tuple[str, int, float]]:
        """(command, calls, total µs) since the last reset, most expensive first."""
        client = aioredis.Redis(port=self.port)
        try:
            info = await client.info("commandstats")
        finally:
            await client.aclose()
        stats = [
            (name.removeprefix("cmdstat_"), int(fields["calls"]), float(fields["usec"]))
            for name, fields in info.items()
        ]
        return sorted(stats, key=lambda item: -item[2])

    def log_tail(self) -> list[str]:
        self.log.flush()
        self.log.seek(0)
        return self.log.read().decode("utf-8", "replace").splitlines()[-5:]

    def log_lines(self, *keys: str) -> list[str]:
        """Lines of redis-server's log that hold any of ``keys`` (e.g. WARNING, Error)."""
        self.log.flush()
        self.log.seek(0)
        text = self.log.read().decode("utf-8", "replace")
        return [line for line in text.splitlines() if any(key in line for key in keys)]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


async def redis_server(nofile: int) -> RedisServer:
    """The run's redis-server, started (and waited for) on first use."""
    if not _REDIS:
        server = RedisServer(nofile)
        await server.ready()
    return _REDIS[0]


@dataclass
class Server:
    kind: str
    port: int
    process: subprocess.Popen[bytes]
    log: IO[bytes]
    redis: RedisServer | None = None  # the redis-server behind the Redis kind
    data_dir: Path | None = None  # this server's own SQLite directory, removed at stop

    @property
    def pid(self) -> int:
        return self.process.pid

    def rss_kib(self) -> int:
        """VmRSS from /proc: the resident memory the kernel charges to the server."""
        return rss_kib(self.pid)

    def cpu_seconds(self) -> float:
        """CPU time the server's threads have run so far (schedstat: ns, not 10 ms ticks)."""
        return cpu_seconds(self.pid)

    def log_problems(self) -> list[str]:
        """Lines of the server's log that point at a failure (tracebacks, errors)."""
        self.log.flush()
        self.log.seek(0)
        text = self.log.read().decode("utf-8", "replace")
        keys = ("Traceback", "ERROR", "Exception", "error")
        return [line for line in text.splitlines() if any(k in line for k in keys)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _command(kind: str, port: int, nofile: int) -> list[str]:
    if kind in TYPEWRITER_KINDS:
        serve = [str(BIN / "typewriter"), "serve", "--port", str(port), "--log-level", "warning"]
    elif kind == "sse-starlette":
        serve = [sys.executable, str(HERE / "sse_starlette_app.py"), "--port", str(port)]
    elif kind == BARE:
        serve = [sys.executable, str(HERE / "sse_starlette_bare.py"), "--port", str(port)]
    else:
        raise ValueError(f"unknown server kind {kind!r}")
    pin = ["taskset", "-c", str(SERVER_CORE)]
    return ["prlimit", f"--nofile={nofile}:{nofile}", *pin, *serve]


def _die_with_parent() -> None:
    """In the child before exec: the kernel sends SIGTERM if the benchmark process dies.

    ``try/finally`` covers errors, Ctrl+C and SIGTERM; this covers SIGKILL and
    crashes, so a server can never outlive the run (the flag survives exec).
    """
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _start(
    kind: str, nofile: int, settings: dict[str, str] | None = None, redis: RedisServer | None = None
) -> Server:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TYPEWRITER_")}
    env.update(settings or {})
    data_dir = None
    store_chosen = {"TYPEWRITER_DATA_DIR", "TYPEWRITER_DATABASE_URL"} & env.keys()
    if kind in TYPEWRITER_KINDS and not store_chosen:
        data_dir = Path(tempfile.mkdtemp(prefix="tw-bench-data-"))
        env["TYPEWRITER_DATA_DIR"] = str(data_dir)
    if kind in TYPEWRITER_KINDS:
        # The load is one user asking thousands of long answers and holding thousands of
        # listeners: lift the per-user limits (a production gateway's defaults would refuse
        # most answers with 429 and 422, and replace all but 100 of the listeners).
        for name, value in _UNLIMITED.items():
            env.setdefault(name, value)
    if kind == REDIS:
        assert redis is not None
        env["TYPEWRITER_BROKER"] = f"{redis.url}?max_connections={REDIS_POOL}"
    log = tempfile.TemporaryFile()
    process = subprocess.Popen(
        _command(kind, port, nofile),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,  # Ctrl+C reaches us only; we stop the servers ourselves
        preexec_fn=_die_with_parent,
    )
    server = Server(kind, port, process, log, redis if kind == REDIS else None, data_dir)
    _STARTED.append(server)
    return server


async def _wait_ready(server: Server, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.kind} exited at start: {server.log_problems()[-5:]}")
        try:
            response = await request(server.port, "GET", "/healthz")
            if response.status == 200:
                break
        except (OSError, HttpError):
            pass  # not listening yet
        if time.monotonic() > deadline:
            raise RuntimeError(f"{server.kind} did not answer /healthz in {timeout} s")
        await asyncio.sleep(0.02)  # poll interval, not a readiness guess
    affinity = os.sched_getaffinity(server.pid)
    if affinity != {SERVER_CORE}:
        raise RuntimeError(f"{server.kind} (pid {server.pid}) runs on cores {affinity}")


def stop(servers: list[Server]) -> None:
    """SIGTERM to all at once, then SIGKILL any that has not gone within a few seconds."""
    alive = [server for server in servers if server.process.poll() is None]
    for server in alive:
        server.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 5
    for server in alive:
        try:
            server.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()
    for server in servers:
        if server.data_dir is not None and server.process.poll() is not None:
            shutil.rmtree(server.data_dir, ignore_errors=True)


def stop_all() -> None:
    """The last line of defence (run.py's ``finally``): no server outlives the run."""
    stop(_STARTED)
    for redis in _REDIS:
        redis.stop()


@contextlib.asynccontextmanager
async def running(
    kinds: tuple[str, ...], nofile: int, settings: dict[str, str] | None = None
) -> AsyncIterator[dict[str, Server]]:
    """The servers up and answering; all stopped on the way out, whatever happened.

    ``settings`` are ``TYPEWRITER_*`` variables for the typewriter servers (both
    brokers). With the Redis kind, the run's redis-server is emptied first.
    """
    servers: dict[str, Server] = {}
    redis = await redis_server(nofile) if REDIS in kinds else None
    if redis is not None:
        await redis.reset()
    try:
        for kind in kinds:
            env = settings if kind in TYPEWRITER_KINDS else None
            servers[kind] = _start(kind, nofile, env, redis)
        for server in servers.values():
            await _wait_ready(server)
        yield servers
    finally:
        stop(list(servers.values()))
