"""The broker's two connection pools, and what a lost Redis looks like to the rest.

redis-py's asyncio client can swallow the cancellation of a task that is inside
a command (measured: about one cancel in three lost on a loop of ``INCR``), so
no task that others cancel awaits Redis directly: producers await a shielded
write, waits of a generation await local events, and loops stop on a flag.
:meth:`Connections.ping` is bounded the same way.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.connection import BlockingConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from typewriter.errors import BrokerUnavailable
from typewriter.streams.base import Entry

log = logging.getLogger(__name__)

__all__ = [
    "entry_of",
    "BLOCK_MS",
    "FULL_MESSAGE",
    "is_full",
    "FAILED",
    "UNREACHABLE",
    "Connections",
    "or_unavailable",
    "retrieve",
    "seq_of",
]

T = TypeVar("T")

# What a lost connection raises. RuntimeError too: on uvloop, redis-py writes to a
# transport that was already closed and uvloop says so with a RuntimeError (the
# connection is dropped first, so the next try reconnects).
UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError, RuntimeError)
FAILED = (RedisError, OSError, RuntimeError)

BLOCK_MS = 1000  # how long one blocking read waits for new entries
_COMMANDS = 256  # connections for commands, per replica
_FOLLOWERS = 4096  # streams and channels followed at once, per replica (one connection each)


class Connections:
    """Commands, and the blocking reads of followers, each of which holds a connection
    for up to a block period.

    Both pools wait for a free connection rather than fail at once (redis-py's
    default pool raises past 100 in use).

    ``timeout`` (the ``redis_timeout`` setting) bounds a command: a Redis that
    stalls (swapping, a long ``KEYS``, a stopped process) fails the command after
    that long, once, rather than hold an ask for three socket timeouts of retries.
    Only a connection refused or reset is retried (quickly: it is a blip or it is
    down); a timeout is not, since the next try would most likely wait as long. A
    blocking read's socket waits its block period plus the same margin.
    """

    def __init__(self, url: str, timeout: float = 3.0) -> None:
        self.url = url
        self.timeout = timeout
        retry = Retry(
            ExponentialBackoff(cap=0.5, base=0.05),
            retries=2,
            supported_errors=(RedisConnectionError,),
        )
        options: dict[str, Any] = {
            "socket_connect_timeout": min(timeout, 2.0),
            "retry": retry,
            "timeout": 5.0,
        }
        commands = BlockingConnectionPool.from_url(
            url, max_connections=_COMMANDS, socket_timeout=timeout, **options
        )
        reads = BlockingConnectionPool.from_url(
            url, max_connections=_FOLLOWERS, socket_timeout=BLOCK_MS / 1000 + timeout, **options
        )
        self.commands: aioredis.Redis = aioredis.Redis(connection_pool=commands)
        self.reads: aioredis.Redis = aioredis.Redis(connection_pool=reads)

    def describe(self) -> str:
        """The URL, its password masked."""
        parts = urlsplit(self.url)
        if parts.password is None:
            return self.url
        netloc = parts.netloc.rsplit("@", 1)[1]
        user = f"{parts.username}:***@" if parts.username else ":***@"
        return urlunsplit(parts._replace(netloc=user + netloc))

    async def ping(self) -> bool:
        """Bounded without cancelling a command (see the module's note on cancels)."""

        async def ping() -> bool:
            return bool(await self.commands.ping())

        probe = asyncio.create_task(ping())
        probe.add_done_callback(retrieve)
        done, _ = await asyncio.wait((probe,), timeout=min(self.timeout, 2.0))
        return bool(done and probe.exception() is None and probe.result())

    async def close(self) -> None:
        await self.commands.aclose(close_connection_pool=True)
        await self.reads.aclose(close_connection_pool=True)


UNAVAILABLE_MESSAGE = "the stream broker (Redis) is unavailable; try again shortly"
_LOG_EVERY = 5.0  # seconds between the log lines of a Redis that stays unavailable
_last_logged = 0.0


async def or_unavailable(awaitable: Awaitable[T]) -> T:
    """Await a command; a Redis that cannot be reached, or that is full, is
    BrokerUnavailable.

    The client is told only that the broker is unavailable: why (Redis's address,
    the socket error) is for the operator's log, once per few seconds however many
    requests fail meanwhile.
    """
    try:
        return await awaitable
    except UNREACHABLE as exc:
        _log_unavailable(exc)
        raise BrokerUnavailable(UNAVAILABLE_MESSAGE) from None
    except OutOfMemoryError:
        raise BrokerUnavailable(FULL_MESSAGE) from None


def _log_unavailable(exc: BaseException) -> None:
    global _last_logged
    now = time.monotonic()
    if now - _last_logged >= _LOG_EVERY:
        _last_logged = now
        log.warning("Redis command failed: %s", exc or type(exc).__name__)


FULL_MESSAGE = "the stream broker (Redis) is out of memory and refuses new events"


def is_full(error: object) -> bool:
    """Whether Redis refused a command for ``maxmemory`` (the ``noeviction`` policy)."""
    return isinstance(error, OutOfMemoryError)


def seq_of(entry_id: bytes) -> int:
    """The number in a Redis stream entry id ``0-{n}``."""
    return int(entry_id.split(b"-")[1])


def entry_of(entry_id: bytes, fields: dict[bytes, bytes]) -> Entry:
    """A stream entry as the local logs keep it, from the fields the append script wrote."""
    return (seq_of(entry_id), fields[b"e"].decode(), fields[b"d"].decode(), fields[b"w"])


def retrieve(task: asyncio.Future[Any]) -> None:
    """Mark a background task's exception as seen: its waiter may have been cancelled."""
    if not task.cancelled():
        task.exception()
