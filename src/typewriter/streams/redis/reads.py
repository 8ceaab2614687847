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

OUTAGE_TOLERANCE = 2.0  # a listener waits this long for Redis before its response ends

Items = list[tuple[bytes, dict[bytes, bytes]]]
"""Entries as ``XREAD`` returns them: ``(entry id, fields)``."""


async def read_on(
    reads: aioredis.Redis,
    background: Background,
    key: str,
    after: str,
    until: Callable[[], bool],
) -> AsyncGenerator[Items, None]:
    """Batches of new entries of the stream ``key`` after the entry id ``after`` (``[]`` when idle).

    Ends when ``until()`` holds (checked after every read, so within one block
    period), when the broker closes, or when Redis has been lost for longer
    than a blip: the reader's listeners then end their responses cleanly and
    their clients resume.
    """
    lost_since: float | None = None
    loop = asyncio.get_running_loop()
    while not until() and not background.closing.is_set():
        try:
            reply: Any = await reads.xread({key: after}, count=512, block=BLOCK_MS)
        except FAILED as exc:
            lost_since = lost_since or loop.time()
            if loop.time() - lost_since > OUTAGE_TOLERANCE:
                log.warning("reading %s stopped: %s", key, exc)
                return
            await background.pause(0.1)
            continue
        lost_since = None
        items = reply[0][1] if reply else []
        if items:
            after = items[-1][0].decode()
        yield items
