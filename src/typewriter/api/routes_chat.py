"""Asking: ``POST /v1/chat``, the assistants to ask, and tickets for EventSource's URLs."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from typewriter.assistants import Assistant
from typewriter.chat import Question
from typewriter.errors import InvalidField, MessageTooLong
from typewriter.images import Image
from typewriter.messages import ChatMessage, ContentPart
from typewriter.models.base import GenerationOptions

from .body import ImageBodies, body_schema, read_json, too_long_fields
from .gateway import Gateway, GatewayDep
from .limit_key import limit_key
from .routes_events import checked_stream_id, event_stream
from .schemas import ChatBody, ChatOptions, TicketBody

__all__ = [
    "ANSWER_IN_PROGRESS",
    "answer_response",
    "answering_assistant",
    "checked_options",
    "router",
]

router = APIRouter(prefix="/v1")

_CHAT_BODY_SCHEMA = body_schema(ChatBody)
ANSWER_IN_PROGRESS: dict[int | str, dict[str, Any]] = {
    409: {
        "description": "the conversation's last answer is still being written "
        "(answer_in_progress, naming its stream_id)"
    }
}


@router.post(
    "/chat",
    openapi_extra=_CHAT_BODY_SCHEMA,
    status_code=202,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "direct mode"},
        **ANSWER_IN_PROGRESS,
    },
)
async def ask(request: Request, gateway: GatewayDep) -> Response:
    """Ask a question. ``Accept: text/event-stream`` streams the answer in this response;
    otherwise ``202`` names the stream to follow with EventSource."""
    settings = gateway.settings
    carrying = ImageBodies(settings.max_image_bytes, b'"images"', ChatBody.image_bytes)
    body = await read_json(request, ChatBody, settings.max_body_bytes, carrying)
    user = gateway.user_of(request)
    assistant = await answering_assistant(gateway, user, body.assistant, body.conversation_id)
    images = tuple(upload.image() for upload in body.images)
    if images and not assistant.accepts_images:
        raise InvalidField.of(
            [
                {
                    "field": "images",
                    "message": f"assistant {assistant.name!r} does not accept images "
                    "(accepts_images in GET /v1/assistants)",
                }
            ]
        )
    question = Question(
        owner=user,
        # With a store the model's history (this question's images too) is read from it.
        messages=(question_message(body.message, () if gateway.store else images),),
        images=images,
        assistant=assistant.name,
        conversation_id=body.conversation_id,
        options=checked_options(assistant, body.options),
        persist=True,
        limit_key=limit_key(request),
    )
    return await answer_response(request, gateway, question, body.on_disconnect)


def question_message(text: str, images: tuple[Image, ...]) -> ChatMessage:
    """The question as the model gets it: its text, then its images (``data:`` URIs)."""
    if not images:
        return ChatMessage("user", text)
    parts = (ContentPart("text", text), *(ContentPart("image_url", url=i.uri()) for i in images))
    return ChatMessage("user", text, parts)


async def answering_assistant(
    gateway: Gateway, user: str, named: str | None, conversation_id: str | None
) -> Assistant:
    """Who answers: the assistant the request names (422 if unknown); else the
    conversation's, while it is still served; else the server's default.

    A conversation keeps the assistant it was made with, so a question into it
    needs no name. One whose assistant the operator has since removed falls back
    to the default rather than refusing every question asked into it.
    """
    if named is not None:
        return gateway.assistant(named)
    if conversation_id is not None and gateway.store is not None:
        conversation = await gateway.store.get_conversation(user, conversation_id)  # 404
        kept = gateway.assistants.get(conversation.assistant)
        if kept is not None:
            return kept
    return gateway.assistant()


def checked_options(assistant: Assistant, options: ChatOptions) -> GenerationOptions:
    """The request's options, refused (422) beyond what the assistant allows."""
    generation = options.to_generation()
    bounds = assistant.out_of_bounds(generation)
    if bounds:
        raise InvalidField.of([{**f, "field": f"options.{f['field']}"} for f in bounds])
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
        subscription = await gateway.streams.subscribe(answer.stream_id, user, 0)

        async def stop_generating() -> None:
            await gateway.control.cancel(answer.stream_id, user)

        return event_stream(
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


@router.get("/assistants")
async def assistants(gateway: GatewayDep) -> dict[str, Any]:
    """The configured assistants (name, model, defaults; the system prompt only with
    ``show_system_prompts``) and ``default``, the one that answers when a request names none."""
    shown = gateway.settings.show_system_prompts
    return {
        "data": [a.public(show_system_prompt=shown) for a in gateway.assistants.values()],
        "default": gateway.assistant().name,
    }


@router.post("/tickets", openapi_extra=body_schema(TicketBody))
async def new_ticket(request: Request, gateway: GatewayDep) -> JSONResponse:
    """A fresh events URL for EventSource: a stream's (``{"stream_id"}``) or the channel's.

    Needs the API key itself: a ticket opens only the URL it was made for.
    """
    body = await read_json(request, TicketBody, gateway.settings.max_body_bytes)
    user = gateway.user_of(request)
    if body.stream_id is not None:
        await gateway.streams.info(checked_stream_id(body.stream_id), user)  # 404 if not theirs
    url = await gateway.auth.events_url(user, body.stream_id)
    return JSONResponse({"events_url": url, "expires_in": gateway.settings.ticket_ttl})
