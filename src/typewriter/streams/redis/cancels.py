"""Stop across replicas: a pub/sub message to be prompt, a flag to be certain.

A message sent while a replica was reconnecting is gone; the flag is read on
every poll of :class:`~typewriter.streams.redis.presence.Listeners`, which
calls :meth:`Cancels.mark` for the flags it finds. A producer only ever waits
on a local event (see :mod:`.connection` on cancels inside redis-py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import redis.asyncio as aioredis

from typewriter.streams.redis.background import Background
from typewriter.streams.redis.connection import FAILED, or_unavailable
from typewriter.streams.redis.full import CANCEL_ANYWAY
from typewriter.streams.redis.keys import RUNNING_TTL, Keys

__all__ = ["Cancels"]

log = logging.getLogger(__name__)


class Cancels:
    """The cancel events of the streams this replica produces, and the subscription that sets
    them."""

    def __init__(self, redis: aioredis.Redis, background: Background, keys: Keys) -> None:
        self._redis = redis
        self._background = background
        self._keys = keys
        self._cancelled: dict[str, asyncio.Event] = {}
        self._cancel_script = redis.register_script(CANCEL_ANYWAY)  # see .full

    async def start(self) -> None:
        """Subscribe to Stop messages (BrokerUnavailable if Redis is away) and listen."""
        pubsub = self._redis.pubsub()
        await or_unavailable(pubsub.subscribe(self._keys.cancels))
        self._background.spawn(self._listen(pubsub))

    def expect(self, stream_id: str) -> None:
        """A stream produced here: a cancel from now on is kept until it is waited for."""
        self._cancelled[stream_id] = asyncio.Event()

    def forget(self, stream_id: str) -> None:
        self._cancelled.pop(stream_id, None)

    async def request(self, stream_id: str) -> None:
        """Ask whichever replica produces the stream to stop it."""
        await or_unavailable(
            self._cancel_script(
                keys=[self._keys.cancel_flag(stream_id)],
                args=[RUNNING_TTL, self._keys.cancels, stream_id],
            )
        )

    async def wait(self, stream_id: str) -> None:
        # Only a local event: set by the pub/sub listener or by the listener-count
        # poller that also reads the cancel flags.
        await self._cancelled.setdefault(stream_id, asyncio.Event()).wait()

    def mark(self, stream_id: str) -> None:
        event = self._cancelled.get(stream_id)
        if event is not None:
            event.set()

    async def _listen(self, pubsub: Any) -> None:
        channel = self._keys.cancels
        while not self._background.closing.is_set():
            try:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            except FAILED as exc:
                log.warning("cancel channel lost (%s); subscribing again", exc)
                await self._background.pause(0.5)
                with contextlib.suppress(*FAILED):
                    await pubsub.subscribe(channel)
                continue
            if message is not None:
                data: Any = message["data"]
                self.mark(data.decode())
        with contextlib.suppress(*FAILED):
            await pubsub.aclose()
