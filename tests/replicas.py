"""``typewriter serve`` as real processes: replicas that can be killed with SIGKILL.

In-thread servers (``make_server``) cannot die the way a replica does in
production. These can: each :class:`Replica` is its own Python process on its
own loopback port, configured only through ``TYPEWRITER_*`` variables (the
caller's own ``TYPEWRITER_*`` are dropped so a developer's shell cannot bend a
test). Registered in ``tests/conftest.py``; the ``replicas`` fixture kills
whatever a test started, even when it failed half-way.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from helpers import free_port


class Replica:
    def __init__(self, data_dir: Path, **settings: object) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("TYPEWRITER_")}
        env["TYPEWRITER_DATA_DIR"] = str(data_dir)
        for name, value in settings.items():
            env[f"TYPEWRITER_{name.upper()}"] = str(value)
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - read back when a start fails
        command = [sys.executable, "-m", "typewriter", "serve", "--port", str(self.port)]
        self.process = subprocess.Popen(command, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    async def ready(self, timeout: float = 30.0) -> None:
        async with asyncio.timeout(timeout), httpx.AsyncClient(base_url=self.url) as client:
            while True:
                if self.process.poll() is not None:
                    raise AssertionError(f"the replica exited:\n{self.output()}")
                try:
                    if (await client.get("/healthz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, exactly like a crashed machine."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def terminate(self, timeout: float = 15.0) -> None:
        """SIGTERM: the graceful stop a deploy sends."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()


class Replicas:
    """Starts replicas that share one data directory unless told otherwise."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.started: list[Replica] = []

    async def start(self, **settings: object) -> Replica:
        replica = Replica(self.data_dir, **settings)
        self.started.append(replica)
        await replica.ready()
        return replica

    def stop_all(self) -> None:
        for replica in self.started:
            replica.terminate(timeout=5)
            replica.log.close()


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[Replicas]:
    started = Replicas(tmp_path)
    try:
        yield started
    finally:
        started.stop_all()
