"""The SSE response: replay then follow one subscription, straight on the ASGI socket.

Frameworks spend most of an SSE server's CPU in per-event machinery (a task
group, a dict and a JSON encoding per event, per listener). Here an event is
encoded once when appended, and a listener writes whatever is pending in one
``send``; FastAPI routes the request and validates it, then steps aside.

Three things end a response: the stream's ``end`` was delivered, the client went
away (a watcher task reading ``receive`` notices at once, which is how closing a
direct response becomes "Stop generating"), or the server is shutting down (the
client then reconnects with ``Last-Event-ID`` to another replica).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from typewriter import sse
from typewriter.streams.base import Subscription

__all__ = ["EVENT_STREAM_HEADERS", "EventStreamResponse", "OpenStreams"]

EVENT_STREAM_HEADERS = {
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-cache",
    "x-accel-buffering": "no",
}
PING = sse.encode_comment("ping")


class OpenStreams:
    """The responses now open, so shutdown can end them instead of waiting them out."""

    def __init__(self) -> None:
        self.closing = False
        self._open: set[EventStreamResponse] = set()

    def __len__(self) -> int:
        return len(self._open)

    def add(self, response: EventStreamResponse) -> None:
        self._open.add(response)

    def discard(self, response: EventStreamResponse) -> None:
        self._open.discard(response)

    def close_all(self) -> None:
        self.closing = True
        for response in list(self._open):
            response.subscription.wake()


class EventStreamResponse(Response):
    """A ``text/event-stream`` response fed by a :class:`Subscription`."""

    def __init__(
        self,
        subscription: Subscription,
        *,
        registry: OpenStreams,
        heartbeat: float,
        retry_ms: int,
        prelude: bytes = b"",
        headers: dict[str, str] | None = None,
        on_disconnect: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        # Response.__init__ would add a Content-Length for an empty body; build the head here.
        self.status_code = 200
        self.background = None
        self.subscription = subscription
        self.registry = registry
        self.heartbeat = heartbeat
        self.prelude = sse.encode_retry(retry_ms) + prelude
        self.on_disconnect = on_disconnect
        self.disconnected = False
        all_headers = {**EVENT_STREAM_HEADERS, **(headers or {})}
        self.raw_headers = [
            (k.encode("latin-1"), v.encode("latin-1")) for k, v in all_headers.items()
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        watcher = asyncio.create_task(self._watch_disconnect(receive))
        self.registry.add(self)
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            await send({"type": "http.response.body", "body": self.prelude, "more_body": True})
            await self._follow(send)
            if not self.disconnected:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            pass  # the socket broke under a write; the watcher hears the disconnect
        finally:
            self.registry.discard(self)
            if self.disconnected and not watcher.done():
                await watcher  # let a Stop reach the producer; never cut it short
            watcher.cancel()
            await self.subscription.close()

    async def _follow(self, send: Send) -> None:
        loop = asyncio.get_running_loop()
        subscription = self.subscription
        heartbeat = self.heartbeat
        last_write = loop.time()
        next_ping = last_write + heartbeat  # moves only when it is reached: one timer per period
        while True:
            batch = await subscription.next(next_ping)
            if batch is None or self.disconnected or self.registry.closing:
                return
            if batch:
                body = batch[0][3] if len(batch) == 1 else b"".join([e[3] for e in batch])
            else:
                now = loop.time()
                if now < next_ping:
                    continue  # woken for another reason; the loop head checks which
                if now - last_write < heartbeat:
                    next_ping = last_write + heartbeat
                    continue
                body = PING
                next_ping = now + heartbeat
            await send({"type": "http.response.body", "body": body, "more_body": True})
            last_write = loop.time()

    async def _watch_disconnect(self, receive: Receive) -> None:
        while True:
            message: Message = await receive()
            if message["type"] == "http.disconnect":
                break
        self.disconnected = True
        self.subscription.wake()
        if self.on_disconnect is not None:
            await self.on_disconnect()
