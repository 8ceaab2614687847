"""A throwaway redis-server for the tests: loopback only, no persistence files.

Registered in ``tests/conftest.py`` (``pytest_plugins``). The server starts on
first use and is stopped at the end of the session (and by ``atexit`` if the
fixture's teardown never ran). ``make test`` installs Debian's ``redis-server``
when it is missing; without it the Redis tests fail, saying so, rather than
being skipped.
"""

from __future__ import annotations

import atexit
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from helpers import free_port


class RedisServer:
    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(
                "redis-server not found: run `make test` (or scripts/ensure-test-services.sh)"
            )
        self.dir = Path(tempfile.mkdtemp(prefix="tw-redis-"))
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.binary = binary
        self._launch()
        atexit.register(self.stop)

    def _launch(self) -> None:
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
                "--protected-mode",
                "yes",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 15
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.01)  # polling for readiness, not guessing it
        client.close()

    def restart(self) -> None:
        """Stop the server and start it again on the same port, empty (no persistence):
        what a Redis restart without persistence, or a failover to an empty replica, is."""
        self.process.kill()
        self.process.wait()
        self._launch()

    def flush(self) -> None:
        with redis.Redis(port=self.port) as client:
            client.flushall()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session's Redis, emptied for this test."""
    redis_server.flush()
    return redis_server.url
