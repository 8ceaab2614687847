"""The SSE response: replay then follow one subscription, straight on the ASGI socket.

Frameworks spend most of an SSE server's CPU in per-event machinery (a task
group, a dict and a JSON encoding per event, per listener). Here an event is
encoded once when appended, and a listener writes whatever is pending in one
``send``; FastAPI routes the request and validates it, then steps aside.

Four things end a response: the stream's ``end`` was delivered, the client went
away (:class:`ClientWatch` hears it at once, which is how closing a direct
response becomes "Stop generating"), the server is shutting down (the
client then reconnects with ``Last-Event-ID`` to another replica), or its user
was revoked (the reconnect then gets 401). A follow-only response may also be
replaced by a newer one of the same user (``listeners``), and ends the same
clean way.

What the metrics count here costs the write loop two integer additions per
write (``observe.metrics.Tally``); a listener opening, closing or resuming is
counted once per response.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from types import TracebackType

from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from typewriter import sse
from typewriter.observe.metrics import Metrics
from typewriter.streams.base import Subscription

from .auth import signed_in_user
from .listeners import Listener, ListenerCap

__all__ = [
    "EVENT_STREAM_HEADERS",
    "ClientWatch",
    "EventStreamResponse",
    "OnDisconnect",
    "OpenStreams",
    "encode_headers",
]

EVENT_STREAM_HEADERS = {
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-cache",
    "x-accel-buffering": "no",
}
PING = sse.encode_comment("ping")
REPLACED = sse.encode_comment(
    "replaced: a newer listener of this user passed max_listeners_per_user"
)
OnDisconnect = Callable[[], Awaitable[None]]


def encode_headers(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    """ASGI's header form, for the responses here that bypass Starlette's ``Response``."""
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]


# Shared by every response without headers of its own (the channel's, most followers'):
# an idle listener should not hold a copy of the same three headers.
_HEAD = encode_headers(EVENT_STREAM_HEADERS)


class OpenStreams:
    """The responses now open, so shutdown can end them instead of waiting them out."""

    def __init__(self, metrics: Metrics | None = None) -> None:
        self.closing = False
        self.metrics = metrics or Metrics()
        self._open: set[ClientWatch] = set()
        self.listeners = ListenerCap()

    def __len__(self) -> int:
        return len(self._open)

    def add(self, watch: ClientWatch) -> None:
        self._open.add(watch)
        self.metrics.listener_opened()

    def discard(self, watch: ClientWatch) -> None:
        if watch in self._open:
            self._open.remove(watch)
            self.metrics.listener_closed()

    def close_all(self) -> None:
        self.closing = True
        for watch in list(self._open):
            watch.subscription.wake()

    def users(self) -> set[str]:
        """Who the open responses are for (those opened without a signed-in user aside)."""
        return {watch.user for watch in self._open if watch.user is not None}

    def end_for(self, users: set[str]) -> None:
        """End the open responses of these users (revoked): each writes what it has, then ends."""
        for watch in list(self._open):
            if watch.user in users:
                watch.end()


class ClientWatch:
    """What every long response needs while it waits on a subscription.

    A task reads ASGI ``receive``: ``http.disconnect`` sets :attr:`disconnected`,
    wakes the subscription and runs ``on_disconnect`` (the cancel of a direct
    answer). Registered in :class:`OpenStreams` so shutdown wakes it too. On
    exit the subscription is closed, which is what starts a grace period.
    """

    __slots__ = (
        "subscription",
        "registry",
        "user",
        "disconnected",
        "replaced",
        "ended",
        "_receive",
        "_on_disconnect",
        "_task",
    )

    def __init__(
        self,
        subscription: Subscription,
        registry: OpenStreams,
        receive: Receive,
        on_disconnect: OnDisconnect | None = None,
        user: str | None = None,
    ) -> None:
        self.subscription = subscription
        self.registry = registry
        self.user = user
        self.disconnected = False
        self.replaced = False
        self.ended = False
        self._receive = receive
        self._on_disconnect = on_disconnect
        self._task: asyncio.Task[None] | None = None

    @property
    def ending(self) -> bool:
        """The client left, the server is stopping, or it was replaced or ended: stop writing."""
        return self.disconnected or self.replaced or self.ended or self.registry.closing

    def replace(self) -> None:
        """End this response cleanly: a newer listener of the same user took its place."""
        self.replaced = True
        self.subscription.wake()

    def end(self) -> None:
        """End this response only (its user was revoked)."""
        self.ended = True
        self.subscription.wake()

    async def __aenter__(self) -> ClientWatch:
        self._task = asyncio.create_task(self._watch())
        self.registry.add(self)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.registry.discard(self)
        task = self._task
        if task is not None:
            if self.disconnected and not task.done():
                await task  # let a Stop reach the producer; never cut it short
            task.cancel()
        await self.subscription.close()

    async def _watch(self) -> None:
        while True:
            message: Message = await self._receive()
            if message["type"] == "http.disconnect":
                break
        self.disconnected = True
        self.subscription.wake()
        if self._on_disconnect is not None:
            await self._on_disconnect()


class EventStreamResponse(Response):
    """A ``text/event-stream`` response fed by a :class:`Subscription`.

    ``retry_ms=None`` leaves out the opening ``retry:`` block (for clients that
    choke on a block without data); :meth:`epilogue` gives subclasses the last
    word once the stream stopped (e.g. to tell a client that cannot resume).
    """

    # Held for as long as the listener stays: slots, not a dict per response (Starlette's
    # Response has no slots, so a subclass or ``headers`` can still add attributes).
    __slots__ = (
        "status_code",
        "background",
        "subscription",
        "registry",
        "heartbeat",
        "prelude",
        "on_disconnect",
        "listener",
        "raw_headers",
    )

    def __init__(
        self,
        subscription: Subscription,
        *,
        registry: OpenStreams,
        heartbeat: float,
        retry_ms: int | None,
        prelude: bytes = b"",
        headers: dict[str, str] | None = None,
        on_disconnect: OnDisconnect | None = None,
        listener: Listener | None = None,
    ) -> None:
        # Response.__init__ would add a Content-Length for an empty body; build the head here.
        self.status_code = 200
        self.background = None
        self.subscription = subscription
        self.registry = registry
        self.heartbeat = heartbeat
        retry = sse.encode_retry(retry_ms) if retry_ms is not None else b""
        self.prelude = retry + prelude
        self.on_disconnect = on_disconnect
        self.listener = listener
        if headers:
            self.raw_headers = encode_headers({**EVENT_STREAM_HEADERS, **headers})
        else:
            self.raw_headers = _HEAD

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        watch = ClientWatch(
            self.subscription, self.registry, receive, self.on_disconnect, signed_in_user(scope)
        )
        sent = self.registry.metrics.sent
        if _resumes(scope):
            sent.resumes += 1
        async with watch:
            if self.listener is not None:
                self.registry.listeners.admit(self.listener, watch)
            try:
                # A copy: middlewares (CORS) add their headers to the message's list in place.
                head = list(self.raw_headers)
                await send({"type": "http.response.start", "status": 200, "headers": head})
                prelude, self.prelude = self.prelude, b""  # written once: not held while idle
                await send({"type": "http.response.body", "body": prelude, "more_body": True})
                sent.bytes += len(prelude)
                del prelude
                await self._follow(send, watch)
                if not watch.disconnected:
                    epilogue = self.epilogue(watch)
                    await send({"type": "http.response.body", "body": epilogue, "more_body": False})
                    sent.bytes += len(epilogue)
            except OSError:
                pass  # the socket broke under a write; the watch hears the disconnect
            finally:
                if self.listener is not None:
                    self.registry.listeners.release(self.listener, watch)

    def epilogue(self, watch: ClientWatch) -> bytes:
        """Bytes to write after the stream stopped and before the body ends."""
        return REPLACED if watch.replaced else b""

    async def _follow(self, send: Send, watch: ClientWatch) -> None:
        loop = asyncio.get_running_loop()
        sent = self.registry.metrics.sent
        subscription = self.subscription
        heartbeat = self.heartbeat
        last_write = loop.time()
        next_ping = last_write + heartbeat  # moves only when it is reached: one timer per period
        while True:
            batch = await subscription.next(next_ping)
            if batch is None:
                return
            if batch:  # written even when ending: it may hold the answer's ``end``
                body = batch[0][3] if len(batch) == 1 else b"".join([e[3] for e in batch])
                sent.events += len(batch)
            elif watch.ending:
                return
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
            sent.bytes += len(body)
            if watch.ending:
                return
            last_write = loop.time()


def _resumes(scope: Scope) -> bool:
    """Whether the request names a resume point: a ``Last-Event-ID`` header (a reconnect) or,
    on a first connect, ``?last_event_id=``; empty means "from the start"."""
    for name, value in scope.get("headers", ()):
        if name == b"last-event-id":
            return bool(value.strip())
    query: bytes = scope.get("query_string", b"")
    return any(
        part.startswith(b"last_event_id=") and len(part) > len(b"last_event_id=")
        for part in query.split(b"&")
    )
