"""Keeping an answer going: following it on EventSource's two URLs, and stopping it.

None of these starts work, so none is rate limited; who may call them is the
dependencies of their two routers (see ``app.create_app``): ``events_router``
takes an API key or a ticket in the URL (EventSource cannot send a header),
``stop_router`` the API key itself.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from starlette.responses import JSONResponse, Response

from typewriter import sse
from typewriter.errors import StoreUnavailable, StreamExpired, StreamNotFound
from typewriter.ids import is_valid_id
from typewriter.jsonutil import dumps
from typewriter.store.tombstones import TOMBSTONE_SECONDS, answered_stream
from typewriter.streams.base import Subscription, parse_cursor

from .event_stream import EventStreamResponse
from .gateway import Gateway, GatewayDep
from .limit_key import limit_key
from .listeners import CHANNEL_TOPIC, Listener, stream_topic

__all__ = ["checked_stream_id", "event_stream", "events_router", "stop_router"]

events_router = APIRouter(prefix="/v1")
stop_router = APIRouter(prefix="/v1")
LastEventIdHeader = Annotated[str | None, Header(alias="last-event-id", include_in_schema=True)]

_STREAM_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}}, "description": "the stream as SSE"},
    204: {"description": "finished, and everything after Last-Event-ID was delivered"},
    400: {"description": "Last-Event-ID is not an event this stream reached"},
    404: {"description": "no such stream"},
    410: {"description": "finished and past its retention period"},
}


def event_stream(
    gateway: Gateway, subscription: Subscription, **kwargs: Any
) -> EventStreamResponse:
    """The SSE response for a subscription, with this gateway's heartbeat and retry."""
    settings = gateway.settings
    return EventStreamResponse(
        subscription,
        registry=gateway.open_streams,
        heartbeat=settings.heartbeat,
        retry_ms=settings.retry_ms,
        **kwargs,
    )


def listener_of(request: Request, gateway: Gateway, topic: str) -> Listener | None:
    """A follow-only listener, counted against ``max_listeners_per_user`` under the
    request's limit key (the user; with auth off the client), or not at all (None)."""
    key = limit_key(request)
    if key is None:
        return None
    return Listener(key, topic, gateway.settings.max_listeners_per_user)


def checked_stream_id(stream_id: str) -> str:
    """Path characters never reach a broker: an id of the wrong form is a stream not found."""
    if not is_valid_id(stream_id):
        raise StreamNotFound(f"no stream {stream_id[:100]!r}")
    return stream_id


@events_router.get("/streams/{stream_id}/events", responses=_STREAM_RESPONSES)
async def follow(
    stream_id: str,
    request: Request,
    gateway: GatewayDep,
    last_event_id: Annotated[
        str | None, Query(description="resume point on a first connect")
    ] = None,
    last_event_id_header: LastEventIdHeader = None,
) -> Response:
    """Replay the stream after ``Last-Event-ID`` (header wins over query), then follow it."""
    stream_id = checked_stream_id(stream_id)
    raw = last_event_id_header if last_event_id_header is not None else last_event_id
    after = parse_cursor(raw)
    user = gateway.user_of(request)
    try:
        info = await gateway.streams.info(stream_id, user)
    except StreamNotFound:
        if await _remembered(gateway, stream_id, user):
            raise StreamExpired(
                f"stream {stream_id!r} finished and is past its retention period"
            ) from None
        raise
    if info.finished and after >= info.last_seq:
        if after > info.last_seq:
            await gateway.streams.subscribe(stream_id, user, after)  # raises the precise 400
        return Response(status_code=204)
    subscription = await gateway.streams.subscribe(stream_id, user, after)
    return event_stream(
        gateway, subscription, listener=listener_of(request, gateway, stream_topic(stream_id))
    )


async def _remembered(gateway: Gateway, stream_id: str, user: str) -> bool:
    """A stream the broker forgot (a restart) whose answer the store keeps: gone, not unknown.

    Only the owner's answers are looked at, so another user's stream stays a 404.
    """
    if gateway.store is None:
        return False
    since = time.time() - gateway.settings.retention - TOMBSTONE_SECONDS
    try:
        return await answered_stream(gateway.store, user, stream_id, since)
    except StoreUnavailable:  # unknown to the broker is all that can be said
        return False


@events_router.get("/events", responses={200: {"content": {"text/event-stream": {}}}})
async def channel(
    request: Request,
    gateway: GatewayDep,
    last_event_id: Annotated[str | None, Query()] = None,
    last_event_id_header: LastEventIdHeader = None,
) -> Response:
    """Every event of all of the caller's streams on one EventSource, resumable by cursor."""
    raw = last_event_id_header if last_event_id_header is not None else last_event_id
    user = gateway.user_of(request)
    subscription = await gateway.channel.subscribe_channel(user, raw or None)
    # With an ``id:`` so that a reconnect before any event resumes from here, not from now.
    position = subscription.position
    connected = sse.encode(
        sse.Event(event="connected", data=dumps({"user": user, "cursor": position}), id=position)
    )
    listener = listener_of(request, gateway, CHANNEL_TOPIC)
    return event_stream(gateway, subscription, prelude=connected, listener=listener)


@stop_router.post("/streams/{stream_id}/cancel", status_code=202)
async def cancel(stream_id: str, request: Request, gateway: GatewayDep) -> JSONResponse:
    """Stop generating, from any replica; the stream ends ``cancelled``."""
    stream_id = checked_stream_id(stream_id)
    user = gateway.user_of(request)
    await gateway.control.cancel(stream_id, user)
    info = await gateway.streams.info(stream_id, user)
    return JSONResponse({"stream_id": stream_id, "finished": info.finished}, status_code=202)
