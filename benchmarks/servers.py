"""The servers under test: started as subprocesses on core 0, stopped no matter what.

Both run in their own process, pinned with ``taskset -c 0`` while this process
(the load) runs on core 1, so neither steals CPU from the other and the server's
own CPU time (``/proc/PID/task/*/schedstat``) says how busy it was. Readiness is polled on
``/healthz``, never guessed with a sleep. Logs go to an anonymous temporary file
(nothing is left on disk) and are scanned for tracebacks afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import resource
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

from loadgen import HttpError, request

__all__ = ["KINDS", "LOAD_CORE", "SERVER_CORE", "Server", "raise_nofile", "running", "stop_all"]

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
KINDS = ("typewriter", "sse-starlette")
SERVER_CORE = 0
LOAD_CORE = 1
_PR_SET_PDEATHSIG = 1
_STARTED: list[Server] = []  # every server ever started, for stop_all() on the way out


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


@dataclass
class Server:
    kind: str
    port: int
    process: subprocess.Popen[bytes]
    log: IO[bytes]

    @property
    def pid(self) -> int:
        return self.process.pid

    def rss_kib(self) -> int:
        """VmRSS from /proc: the resident memory the kernel charges to the server."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError(f"no VmRSS for pid {self.pid}")

    def cpu_seconds(self) -> float:
        """CPU time the server's threads have run so far (schedstat: ns, not 10 ms ticks)."""
        total = 0
        for task in Path(f"/proc/{self.pid}/task").iterdir():
            with contextlib.suppress(OSError):  # a thread may end while we look
                total += int((task / "schedstat").read_text().split()[0])
        return total / 1e9

    def log_problems(self) -> list[str]:
        """Lines of the server's log that point at a failure (tracebacks, errors)."""
        self.log.flush()
        self.log.seek(0)
        text = self.log.read().decode("utf-8", "replace")
        keys = ("Traceback", "ERROR", "Exception", "error")
        return [line for line in text.splitlines() if any(k in line for k in keys)]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _command(kind: str, port: int, nofile: int) -> list[str]:
    if kind == "typewriter":
        serve = [str(BIN / "typewriter"), "serve", "--port", str(port), "--log-level", "warning"]
    elif kind == "sse-starlette":
        serve = [sys.executable, str(HERE / "sse_starlette_app.py"), "--port", str(port)]
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


def _start(kind: str, nofile: int, settings: dict[str, str] | None = None) -> Server:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TYPEWRITER_")}
    env.update(settings or {})
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
    server = Server(kind, port, process, log)
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


def stop_all() -> None:
    """The last line of defence (run.py's ``finally``): no server outlives the run."""
    stop(_STARTED)


@contextlib.asynccontextmanager
async def running(
    kinds: tuple[str, ...], nofile: int, settings: dict[str, str] | None = None
) -> AsyncIterator[dict[str, Server]]:
    """Both servers up and answering; both stopped on the way out, whatever happened.

    ``settings`` are ``TYPEWRITER_*`` variables for the typewriter server.
    """
    servers: dict[str, Server] = {}
    try:
        for kind in kinds:
            servers[kind] = _start(kind, nofile, settings if kind == "typewriter" else None)
        for server in servers.values():
            await _wait_ready(server)
        yield servers
    finally:
        stop(list(servers.values()))
