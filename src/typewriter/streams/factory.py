"""Choose a broker by URL, importing a backend only when it is chosen."""

from __future__ import annotations

from typewriter.errors import ConfigError
from typewriter.streams.base import Broker

__all__ = ["create_broker"]


def create_broker(
    url: str,
    *,
    retention: float,
    lease_timeout: float = 15.0,
    redis_timeout: float = 3.0,
    max_retained_bytes: int = 256 * 1024 * 1024,
    max_retained_bytes_per_user: int = 32 * 1024 * 1024,
) -> Broker:
    """``memory`` (the default) or ``redis://host:port/db`` (replicas).

    The byte budget is the in-process broker's alone: Redis bounds its memory itself
    (``maxmemory``), and its streams live in another process.
    """
    if url in ("memory", "memory://"):
        from typewriter.streams.memory import MemoryBroker

        return MemoryBroker(
            retention=retention,
            max_retained_bytes=max_retained_bytes,
            max_retained_bytes_per_user=max_retained_bytes_per_user,
        )
    if url.startswith(("redis://", "rediss://", "unix://")):
        from typewriter.streams.redis import RedisBroker

        return RedisBroker(
            url, retention=retention, lease_timeout=lease_timeout, timeout=redis_timeout
        )
    raise ConfigError(
        f"broker {url!r} is not known: use 'memory' (in-process) or 'redis://host:port/db'",
    )
