"""Writing again a running stream that Redis lost, with the numbers it had.

A producer keeps the events Redis confirmed for each stream it writes (bounded
by ``max_answer_chars``); when Redis loses them, it writes them back with the
same numbers (:data:`~.keys.RESTORE`) and goes on, so a listener anywhere
reading after event 57 next gets 58, and a reconnect is answered as before.
A replica whose listeners were shown a stream whose producer died restores it
the same way from what they were shown, then ends it ``interrupted``.
The script writes only while the stream's meta is missing: whoever restores
first is its producer, a later one is told ``StreamTakenOver``.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from typewriter.errors import StreamTakenOver
from typewriter.streams.base import Entry
from typewriter.streams.redis.keys import RESTORE, RUNNING_TTL, Keys

__all__ = ["Restorer"]


class Restorer:
    """The one script, with this replica's token and lease."""

    def __init__(self, redis: aioredis.Redis, keys: Keys, *, token: str, lease_ms: int) -> None:
        self._script = redis.register_script(RESTORE)
        self._keys = keys
        self._token = token
        self._lease_ms = lease_ms

    async def restore(self, stream_id: str, owner: str, entries: list[Entry]) -> bool:
        """Write the stream back from ``entries`` (numbered 1..N, no gap) with this replica
        as its producer: True if written, False if it was there already (ours);
        StreamTakenOver if another replica holds it. Redis errors propagate."""
        args: list[Any] = [owner, self._token, self._lease_ms, stream_id, RUNNING_TTL, len(entries)]
        for seq, event, data, wire in entries:
            args += [seq, event, data, wire]
        try:
            written: Any = await self._script(keys=self._keys.restore(stream_id), args=args)
        except ResponseError as exc:
            if str(exc).startswith("TWTAKEN"):
                raise StreamTakenOver(f"stream {stream_id!r}: {exc}") from None
            raise
        return bool(written)
