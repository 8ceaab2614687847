"""Blocking reads of one Redis stream, for the followers of streams and of channels."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Callable
from typing import Any

import redis.asyncio as aioredis

from typewriter.streams.redis.background import Background
from typewriter.streams.redis.connection import BLOCK_MS, FAILED

__all__ = ["read_on"]

log = logging.getLogger(__name__)

OUTAGE_TOLERANCE = 2.0  # a listener waits this long for Redis by default before it ends

_FIRST_PAUSE, _MAX_PAUSE = 0.1, 1.0  # between reads that failed, doubling

Items = list[tuple[bytes, dict[bytes, bytes]]]
"""Entries as ``XREAD`` returns them: ``(entry id, fields)``."""


async def read_on(
    reads: aioredis.Redis,
    background: Background,
    key: str,
    after: str,
    until: Callable[[], bool],
    patience: float = OUTAGE_TOLERANCE,
) -> AsyncGenerator[Items, None]:
    """Batches of new entries of the stream ``key`` after the entry id ``after`` (``[]`` when idle).

    Ends when ``until()`` holds (checked after every read, so within one block
    period), when the broker closes, or when Redis has been lost for longer
    than ``patience`` seconds: the reader's listeners then end their responses
    cleanly and their clients resume. Until then the listeners' responses stay
    open (with their heartbeats) and go on from where they were once Redis is
    back: a client that reconnected meanwhile would get ``503``, on which a
    browser's EventSource gives up for good.
    """
    lost_since: float | None = None
    pause = _FIRST_PAUSE
    loop = asyncio.get_running_loop()
    while not until() and not background.closing.is_set():
        try:
            reply: Any = await reads.xread({key: after}, count=512, block=BLOCK_MS)
        except FAILED as exc:
            lost_since = lost_since or loop.time()
            if loop.time() - lost_since > patience:
                log.warning("reading %s stopped: %s", key, exc)
                return
            # Backing off: thousands of followers must not hammer a Redis that stalls.
            await background.pause(pause)
            pause = min(pause * 2, _MAX_PAUSE)
            continue
        lost_since = None
        pause = _FIRST_PAUSE
        items = reply[0][1] if reply else []
        if items:
            after = items[-1][0].decode()
        yield items
