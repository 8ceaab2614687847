"""EventSource's two URLs answered in front of the framework's routing.

An open ``GET /v1/events`` or ``GET /v1/streams/{id}/events`` is mostly idle for
hours, and everything on its call stack lives as long as it does. Through
FastAPI's router each one held about 11 KB of request handling for its whole life
(16 coroutine frames, three ``AsyncExitStack``\\ s, two ``Request``\\ s, the
``send`` wrappers of two exception middlewares; ``benchmarks/bench_idle.py``):
half of what a listener costs. Here the same route functions run with the same
sign-in (``auth.key_or_ticket``) and the same error replies (``error_reply``),
inside the same outer middlewares (client address, access log, header limit,
CORS), so nothing a client sees changes; only the framework's own layers are
skipped. The routes stay declared in ``routes_events`` for the API's schema, and
anything else (another method, a path of another shape) goes on to the app.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from typewriter.errors import TypewriterError

from .auth import key_or_ticket
from .error_handlers import error_reply
from .routes_events import channel, follow

__all__ = ["EventRoutes"]

_CHANNEL = "/v1/events"
_STREAMS = "/v1/streams/"
_EVENTS = "/events"


def _stream_id(path: str) -> str | None:
    """The ``{stream_id}`` of ``/v1/streams/{stream_id}/events``, matched as the router
    matches it (one path segment, not empty); None for any other path."""
    if not (path.startswith(_STREAMS) and path.endswith(_EVENTS)):
        return None
    stream_id = path[len(_STREAMS) : -len(_EVENTS)]
    if not stream_id or "/" in stream_id:
        return None
    return stream_id


class EventRoutes:
    """ASGI middleware: the events URLs' GETs, answered here; the rest, passed on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        stream_id = None if path == _CHANNEL else _stream_id(path)
        if path != _CHANNEL and stream_id is None:
            await self.app(scope, receive, send)
            return
        response = await _respond(scope, receive, stream_id)
        await response(scope, receive, send)


async def _respond(scope: Scope, receive: Receive, stream_id: str | None) -> Response:
    """The events URL's response (or its error reply). A function of its own so that the
    request object and what it parsed are let go before the response starts, which for
    an event stream is hours later."""
    if stream_id is not None:
        scope["path_params"] = {"stream_id": stream_id}
    request = Request(scope, receive)
    gateway = request.app.state.gateway
    last_event_id = request.query_params.get("last_event_id")
    header = request.headers.get("last-event-id")
    try:
        await key_or_ticket(request)
        if stream_id is None:
            return await channel(request, gateway, last_event_id, header)
        return await follow(stream_id, request, gateway, last_event_id, header)
    except TypewriterError as exc:
        return error_reply(request, exc).response()
