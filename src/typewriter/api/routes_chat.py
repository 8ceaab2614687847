"""Asking: ``POST /v1/chat``, the assistants to ask, and tickets for EventSource's URLs."""

from __future__ import annotations

from typing import Any, TypeVar

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
from .schemas import AskBody, ChatBody, ChatOptions, TicketBody

__all__ = [
    "ANSWER_IN_PROGRESS",
    "answer_response",
    "answering_assistant",
    "asked_images",
    "checked_options",
    "question_message",
    "read_ask",
    "router",
]

router = APIRouter(prefix="/v1")
AskT = TypeVar("AskT", bound=AskBody)

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
    body = await read_ask(request, gateway, ChatBody)
    user = gateway.user_of(request)
    conversation_id = body.conversation_id
    if body.parent_id is not None:
        if gateway.store is None:
            raise InvalidField.of(
                [{"field": "parent_id", "message": "this server keeps no conversations"}]
            )
        if conversation_id is None:  # the answer's conversation (404 if not the caller's)
            conversation_id = (
                await gateway.store.get_message(user, body.parent_id)
            ).conversation_id
    assistant = await answering_assistant(gateway, user, body.assistant, conversation_id)
    images = asked_images(body, assistant)
    question = Question(
        owner=user,
        # With a store the model's history (this question's images too) is read from it.
        messages=(question_message(body.message, () if gateway.store else images),),
        images=images,
        assistant=assistant.name,
        conversation_id=conversation_id,
        parent=body.parent_id,
        options=checked_options(assistant, body.options),
        persist=True,
        limit_key=limit_key(request),
    )
    return await answer_response(request, gateway, question, body.on_disconnect)


async def read_ask(request: Request, gateway: Gateway, schema: type[AskT]) -> AskT:
    """A question's body, its images allowed past ``max_body_bytes`` up to their own bound."""
    settings = gateway.settings
    carrying = ImageBodies(settings.max_image_bytes, b'"images"', schema.image_bytes)
    return await read_json(request, schema, settings.max_body_bytes, carrying)


def asked_images(body: AskBody, assistant: Assistant) -> tuple[Image, ...]:
    """The question's images, refused (422) for an assistant that does not read them."""
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
    return images


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
        "question_id": answer.question_id,
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
