"""Asking, following and stopping answers: ``/v1/chat``, ``/v1/streams``, ``/v1/events``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from starlette.responses import JSONResponse, Response

from typewriter import sse
from typewriter.chat import Question
from typewriter.errors import InvalidField, MessageTooLong, StreamNotFound
from typewriter.ids import is_valid_id
from typewriter.jsonutil import dumps
from typewriter.messages import ChatMessage
from typewriter.models.base import GenerationOptions
from typewriter.streams.base import Subscription, parse_cursor

from .body import body_schema, read_json, too_long_fields
from .event_stream import EventStreamResponse
from .gateway import Gateway, get_gateway
from .schemas import ChatBody, ChatOptions, TicketBody

__all__ = ["answer_response", "checked_options", "router"]

router = APIRouter(prefix="/v1")
GatewayDep = Annotated[Gateway, Depends(get_gateway)]
LastEventIdHeader = Annotated[str | None, Header(alias="last-event-id", include_in_schema=True)]

_CHAT_BODY_SCHEMA = body_schema(ChatBody)
_STREAM_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}}, "description": "the stream as SSE"},
    204: {"description": "finished, and everything after Last-Event-ID was delivered"},
    400: {"description": "Last-Event-ID is not an event this stream reached"},
    404: {"description": "no such stream"},
    410: {"description": "finished and past its retention period"},
}


def _stream_response(
    gateway: Gateway, subscription: Subscription, **kwargs: Any
) -> EventStreamResponse:
    settings = gateway.settings
    return EventStreamResponse(
        subscription,
        registry=gateway.open_streams,
        heartbeat=settings.heartbeat,
        retry_ms=settings.retry_ms,
        **kwargs,
    )


@router.post(
    "/chat",
    openapi_extra=_CHAT_BODY_SCHEMA,
    status_code=202,
    responses={200: {"content": {"text/event-stream": {}}, "description": "direct mode"}},
)
async def ask(request: Request, gateway: GatewayDep) -> Response:
    """Ask a question. ``Accept: text/event-stream`` streams the answer in this response;
    otherwise ``202`` names the stream to follow with EventSource."""
    body = await read_json(request, ChatBody, gateway.settings.max_body_bytes)
    question = Question(
        owner=gateway.user_of(request),
        messages=(ChatMessage("user", body.message),),
        assistant=body.assistant,
        conversation_id=body.conversation_id,
        options=checked_options(gateway, body.assistant, body.options),
        persist=True,
    )
    return await answer_response(request, gateway, question, body.on_disconnect)


def checked_options(gateway: Gateway, assistant: str, options: ChatOptions) -> GenerationOptions:
    """The request's options, refused (422) for an unknown assistant or beyond its bounds."""
    if assistant not in gateway.assistants:
        known = ", ".join(sorted(gateway.assistants))
        raise InvalidField(
            f"assistant {assistant!r} is not configured; choose one of: {known}",
            fields=[{"field": "assistant", "message": f"unknown assistant; known: {known}"}],
        )
    generation = options.to_generation()
    bounds = gateway.assistants[assistant].out_of_bounds(generation)
    if bounds:
        fields = [{**f, "field": f"options.{f['field']}"} for f in bounds]
        raise InvalidField(
            "; ".join(f"{f['field']}: {f['message']}" for f in fields), fields=fields
        )
    return generation


async def answer_response(
    request: Request, gateway: Gateway, question: Question, on_disconnect: str
) -> Response:
    """Start the answer; stream it here (``Accept: text/event-stream``) or answer 202."""
    try:
        answer = await gateway.chat.ask(question)
    except MessageTooLong as exc:  # the one new message of /v1/chat
        raise too_long_fields(exc, lambda _: "message") from None
    user = question.owner
    if "text/event-stream" in request.headers.get("accept", ""):
        subscription = await gateway.broker.subscribe(answer.stream_id, user, 0)

        async def stop_generating() -> None:
            await gateway.broker.cancel(answer.stream_id, user)

        return _stream_response(
            gateway,
            subscription,
            headers={"x-stream-id": answer.stream_id},
            on_disconnect=stop_generating if on_disconnect == "cancel" else None,
        )
    events_url = await gateway.auth.events_url(user, answer.stream_id)
    content = {
        "stream_id": answer.stream_id,
        "conversation_id": answer.conversation_id,
        "message_id": answer.message_id,
        "events_url": events_url,
    }
    return JSONResponse(content, status_code=202, headers={"location": events_url})


def _checked_stream_id(stream_id: str) -> str:
    if not is_valid_id(stream_id):
        raise StreamNotFound(f"no stream {stream_id[:100]!r}")
    return stream_id


@router.get("/streams/{stream_id}/events", responses=_STREAM_RESPONSES)
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
    stream_id = _checked_stream_id(stream_id)
    raw = last_event_id_header if last_event_id_header is not None else last_event_id
    after = parse_cursor(raw)
    user = gateway.user_of(request)
    info = await gateway.broker.info(stream_id, user)
    if info.finished and after >= info.last_seq:
        if after > info.last_seq:
            await gateway.broker.subscribe(stream_id, user, after)  # raises the precise 400
        return Response(status_code=204)
    subscription = await gateway.broker.subscribe(stream_id, user, after)
    return _stream_response(gateway, subscription)


@router.post("/streams/{stream_id}/cancel", status_code=202)
async def cancel(stream_id: str, request: Request, gateway: GatewayDep) -> JSONResponse:
    """Stop generating, from any replica; the stream ends ``cancelled``."""
    stream_id = _checked_stream_id(stream_id)
    user = gateway.user_of(request)
    await gateway.broker.cancel(stream_id, user)
    info = await gateway.broker.info(stream_id, user)
    return JSONResponse({"stream_id": stream_id, "finished": info.finished}, status_code=202)


@router.get("/events", responses={200: {"content": {"text/event-stream": {}}}})
async def channel(
    request: Request,
    gateway: GatewayDep,
    last_event_id: Annotated[str | None, Query()] = None,
    last_event_id_header: LastEventIdHeader = None,
) -> Response:
    """Every event of all of the caller's streams on one EventSource, resumable by cursor."""
    raw = last_event_id_header if last_event_id_header is not None else last_event_id
    user = gateway.user_of(request)
    subscription = await gateway.broker.subscribe_channel(user, raw or None)
    connected = sse.encode(
        sse.Event(event="connected", data=dumps({"user": user, "cursor": str(subscription.cursor)}))
    )
    return _stream_response(gateway, subscription, prelude=connected)


@router.get("/assistants")
async def assistants(gateway: GatewayDep) -> dict[str, Any]:
    """The configured assistants: name, model, system prompt, defaults."""
    return {"data": [a.public() for a in gateway.assistants.values()]}


@router.post("/tickets", openapi_extra=body_schema(TicketBody))
async def new_ticket(request: Request, gateway: GatewayDep) -> JSONResponse:
    """A fresh events URL for EventSource: a stream's (``{"stream_id"}``) or the channel's.

    Needs the API key itself: a ticket opens only the URL it was made for.
    """
    body = await read_json(request, TicketBody, gateway.settings.max_body_bytes)
    user = gateway.user_of(request)
    if body.stream_id is not None:
        await gateway.broker.info(_checked_stream_id(body.stream_id), user)  # 404 if not theirs
    url = await gateway.auth.events_url(user, body.stream_id)
    return JSONResponse({"events_url": url, "expires_in": gateway.settings.ticket_ttl})
