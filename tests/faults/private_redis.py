"""A redis-server of one test's own, to fill up or to freeze without touching the others.

The session's Redis (``tests/redis_server.py``) is shared by every test of the run;
these faults would leak into them. :func:`frozen` stops the process (``SIGSTOP``),
as a Redis that swaps, forks a huge snapshot or runs a long ``KEYS`` does: its
sockets stay open and every command hangs. :func:`full` sets ``maxmemory`` just
above what it uses, with the ``noeviction`` policy the deployment guide advises.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

import pytest
import redis

from redis_server import RedisServer

__all__ = ["free_memory", "frozen", "full", "private_redis"]


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    server = RedisServer()
    try:
        yield server
    finally:
        with contextlib.suppress(ProcessLookupError):
            server.process.send_signal(signal.SIGCONT)
        server.stop()


@contextlib.contextmanager
def frozen(server: RedisServer) -> Iterator[None]:
    """The process stopped for the block's duration, then continued."""
    server.process.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        server.process.send_signal(signal.SIGCONT)


def full(server: RedisServer) -> None:
    """Redis full from now on: ``maxmemory`` below what it uses, ``noeviction``.

    Below rather than just above: a stream grows by whole allocations now and then,
    so a margin of a few events may take many more to cross.
    """
    with redis.Redis(port=server.port) as client:
        client.config_set("maxmemory-policy", "noeviction")
        used = int(client.info("memory")["used_memory"])
        client.config_set("maxmemory", used // 2)


def free_memory(server: RedisServer) -> None:
    with redis.Redis(port=server.port) as client:
        client.config_set("maxmemory", 0)
