"""Conversations that remember: list, read, rename, delete, clear, regenerate, rate."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from starlette.responses import JSONResponse, Response

from typewriter.assistants import Assistant
from typewriter.chat import Question
from typewriter.errors import NotFound, TypewriterError
from typewriter.ids import is_valid_id
from typewriter.images import IMAGE_TYPES
from typewriter.store.records import Message
from typewriter.store.search import SEARCH_LENGTH
from typewriter.store.sql import SqlStore

from .body import body_schema, read_json
from .export import attachment_disposition, markdown_of
from .gateway import Gateway, GatewayDep
from .limit_key import limit_key
from .routes_chat import (
    ANSWER_IN_PROGRESS,
    answer_response,
    answering_assistant,
    asked_images,
    checked_options,
    question_message,
    read_ask,
)
from .schemas import ChatOptions, EditBody, FeedbackBody, NewConversation, RegenerateBody, Rename

__all__ = ["router"]

log = logging.getLogger(__name__)
_STREAM_LOOKS, _STREAM_LOOK_INTERVAL = 100, 0.02  # 2 s for an ask to create its stream
router = APIRouter(prefix="/v1", tags=["conversations"])


def store_of(gateway: Gateway) -> SqlStore:
    """The store, or ``404 no_store`` on a server that keeps no conversations."""
    if gateway.store is None:
        raise NotFound("this server keeps no conversations (database_url = none)", code="no_store")
    return gateway.store


def _id(value: str, kind: str) -> str:
    if not is_valid_id(value):
        raise NotFound(f"no {kind} {value[:100]!r}", code=f"{kind}_not_found")
    return value


@router.get("/conversations")
async def list_conversations(
    request: Request,
    gateway: GatewayDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    q: Annotated[str | None, Query(max_length=SEARCH_LENGTH)] = None,
) -> dict[str, Any]:
    """The caller's conversations, newest first; follow ``next_cursor`` for more.

    With ``q``, only those whose title or any message holds it: a substring, ignoring
    case, in any script (``store.search``); each with the ``snippet`` of the first message
    holding it (``null``: found by its title alone)."""
    store, user, search = store_of(gateway), gateway.user_of(request), (q or "").strip()
    if not search:
        page, next_cursor = await store.list_conversations(user, limit, cursor)
        return {"data": [c.public() for c in page], "next_cursor": next_cursor}
    page, next_cursor, found = await store.search_conversations(user, search, limit, cursor)
    data = [{**c.public(), "snippet": found.get(c.id)} for c in page]
    return {"data": data, "next_cursor": next_cursor}


_ATTACHMENT_HEADERS = {
    "x-content-type-options": "nosniff",
    "content-security-policy": "default-src 'none'; sandbox",
    "cache-control": "private, no-store",
    "cross-origin-resource-policy": "same-origin",
}


@router.get(
    "/attachments/{attachment_id}",
    response_class=Response,
    responses={200: {"content": {t: {} for t in IMAGE_TYPES}, "description": "the image"}},
)
async def get_attachment(attachment_id: str, request: Request, gateway: GatewayDep) -> Response:
    """An image stored with one of the caller's questions, as its bytes.

    Served as the type its bytes were found to be, which is always an image's, with
    ``nosniff`` and a CSP that runs nothing: an attachment can only ever be shown as
    an image, never run as a page of this origin."""
    store = store_of(gateway)
    image = await store.attachment(gateway.user_of(request), _id(attachment_id, "attachment"))
    if image.media_type not in IMAGE_TYPES:  # never stored so; refuse rather than serve it
        raise NotFound(f"no attachment {attachment_id[:100]!r}", code="attachment_not_found")
    headers = {**_ATTACHMENT_HEADERS, "content-disposition": "inline"}
    return Response(image.data, media_type=image.media_type, headers=headers)


@router.post("/conversations", status_code=201, openapi_extra=body_schema(NewConversation))
async def create_conversation(request: Request, gateway: GatewayDep) -> JSONResponse:
    body = await read_json(request, NewConversation, gateway.settings.max_body_bytes)
    assistant = gateway.assistant(body.assistant)  # 422 if unknown; the default if unnamed
    conversation = await store_of(gateway).create_conversation(
        gateway.user_of(request), body.title, assistant.name
    )
    return JSONResponse(conversation.public(), status_code=201)


@router.get("/conversations/{conversation_id}")
async def get_conversation(
    conversation_id: str, request: Request, gateway: GatewayDep
) -> dict[str, Any]:
    """One conversation with all its messages, oldest first."""
    store, user = store_of(gateway), gateway.user_of(request)
    conversation_id = _id(conversation_id, "conversation")
    conversation = await store.get_conversation(user, conversation_id)
    messages = await store.messages(user, conversation_id)
    shown = [m.public(show_reasoning=_shows_reasoning(gateway, m.assistant)) for m in messages]
    return {**conversation.public(), "messages": shown}


@router.get("/conversations/{conversation_id}/branch")
async def get_branch(
    conversation_id: str,
    request: Request,
    gateway: GatewayDep,
    through: Annotated[str | None, Query(max_length=100)] = None,
) -> dict[str, Any]:
    """One branch of the conversation, root first: the path to ``through`` (default: the
    newest message), then on down by the newest child. Each message lists its
    ``siblings``: the branches beside it (itself included, oldest first), for a pager."""
    store, user = store_of(gateway), gateway.user_of(request)
    conversation_id = _id(conversation_id, "conversation")
    conversation = await store.get_conversation(user, conversation_id)
    branch = await store.branch(user, conversation_id, _through(through))
    shown = [
        {**m.public(show_reasoning=_shows_reasoning(gateway, m.assistant)), "siblings": siblings}
        for m, siblings in branch
    ]
    return {**conversation.public(), "messages": shown}


def _through(value: str | None) -> str | None:
    return None if value is None else _id(value, "message")


@router.get(
    "/conversations/{conversation_id}/export",
    response_class=Response,
    responses={
        200: {
            "content": {"text/markdown": {}, "application/json": {}},
            "description": "the conversation as a file to save",
        }
    },
)
async def export_conversation(
    conversation_id: str,
    request: Request,
    gateway: GatewayDep,
    format: Annotated[Literal["markdown", "json"], Query()] = "markdown",  # noqa: A002
    through: Annotated[str | None, Query(max_length=100)] = None,
) -> Response:
    """The conversation as a download: Markdown (its title, then each message of one
    branch under its speaker: the branch through ``through``, default the newest, as
    ``/branch`` reads it) or JSON (what ``GET /v1/conversations/{id}`` answers: every
    message of every branch, each with its ``parent_id``)."""
    store, user = store_of(gateway), gateway.user_of(request)
    conversation_id = _id(conversation_id, "conversation")
    conversation = await store.get_conversation(user, conversation_id)
    if format == "markdown":
        branch = await store.branch(user, conversation_id, _through(through))
        messages = [message for message, _ in branch]
    else:
        messages = await store.messages(user, conversation_id)
    headers = {"cache-control": "private, no-store", "x-content-type-options": "nosniff"}
    if format == "json":
        shown = [m.public(show_reasoning=_shows_reasoning(gateway, m.assistant)) for m in messages]
        headers["content-disposition"] = attachment_disposition(conversation, "json")
        body = {**conversation.public(), "messages": shown}
        return JSONResponse(body, headers=headers)
    headers["content-disposition"] = attachment_disposition(conversation, "md")
    return Response(
        markdown_of(conversation, messages),
        media_type="text/markdown; charset=utf-8",
        headers=headers,
    )


def _shows_reasoning(gateway: Gateway, assistant: str | None) -> bool:
    """Whether the answer's assistant shows its reasoning (``reasoning = "show"``).

    An assistant no longer configured shows none: the reasoning stays stored, and an
    operator who removed an assistant has not said its thinking may be read.
    """
    known = gateway.assistants.get(assistant) if assistant is not None else None
    return known is not None and known.reasoning == "show"


@router.patch("/conversations/{conversation_id}", openapi_extra=body_schema(Rename))
async def rename_conversation(
    conversation_id: str, request: Request, gateway: GatewayDep
) -> dict[str, Any]:
    body = await read_json(request, Rename, gateway.settings.max_body_bytes)
    conversation = await store_of(gateway).rename_conversation(
        gateway.user_of(request), _id(conversation_id, "conversation"), body.title
    )
    return conversation.public()


@router.delete("/conversations/{conversation_id}", status_code=204)
async def delete_conversation(
    conversation_id: str, request: Request, gateway: GatewayDep
) -> Response:
    """Delete it and its messages, and stop the answer it is writing, if any."""
    user = gateway.user_of(request)
    running = await store_of(gateway).delete_conversation(
        user, _id(conversation_id, "conversation")
    )
    await _stop(gateway, user, running)
    return Response(status_code=204)


@router.delete("/conversations/{conversation_id}/messages", status_code=204)
async def clear_conversation(
    conversation_id: str, request: Request, gateway: GatewayDep
) -> Response:
    """Forget the history (the model's context) and stop the answer being written; the
    conversation itself stays."""
    user = gateway.user_of(request)
    running = await store_of(gateway).clear_messages(user, _id(conversation_id, "conversation"))
    await _stop(gateway, user, running)
    return Response(status_code=204)


async def _stop(gateway: Gateway, user: str, stream_ids: list[str]) -> None:
    """Stop the answers whose messages were just deleted, as their Stop button would.

    An ask records its answer, then creates its stream: a stream not found yet may be
    that of an ask between the two, so it is looked for again for a moment. The deletion
    is done whatever happens here: a broker that cannot be reached is logged, not
    answered, as answering an error would say the deletion failed.
    """
    await asyncio.gather(*(_stop_one(gateway, user, stream_id) for stream_id in stream_ids))


async def _stop_one(gateway: Gateway, user: str, stream_id: str) -> None:
    for _ in range(_STREAM_LOOKS):
        try:
            await gateway.control.cancel(stream_id, user)
            return
        except NotFound:
            await asyncio.sleep(_STREAM_LOOK_INTERVAL)
        except TypewriterError as exc:
            log.warning("answer %s of a deleted conversation not stopped: %s", stream_id, exc)
            return


@router.post(
    "/messages/{message_id}/regenerate",
    status_code=202,
    openapi_extra=body_schema(RegenerateBody),
    responses=ANSWER_IN_PROGRESS,
)
async def regenerate(message_id: str, request: Request, gateway: GatewayDep) -> Response:
    """Answer the same question again, with the history before it; like ``POST /v1/chat``."""
    store, user = store_of(gateway), gateway.user_of(request)
    message = await store.get_message(user, _id(message_id, "message"))
    headers = request.headers
    has_body = headers.get("content-length", "0") != "0" or "transfer-encoding" in headers
    body = (
        await read_json(request, RegenerateBody, gateway.settings.max_body_bytes)
        if has_body
        else RegenerateBody()
    )
    assistant = await answering_assistant(gateway, user, body.assistant, message.conversation_id)
    question = _asked_again(request, user, message, assistant, body.options, regenerate=message.id)
    return await answer_response(request, gateway, question, body.on_disconnect)


@router.post(
    "/messages/{message_id}/edit",
    status_code=202,
    openapi_extra=body_schema(EditBody),
    responses=ANSWER_IN_PROGRESS,
)
async def edit(message_id: str, request: Request, gateway: GatewayDep) -> Response:
    """Ask a new version of a question: it goes beside the question (a new branch, after
    the same answer) and is answered with the history before it; like ``POST /v1/chat``."""
    store, user = store_of(gateway), gateway.user_of(request)
    message = await store.get_message(user, _id(message_id, "message"))
    body = await read_ask(request, gateway, EditBody)
    assistant = await answering_assistant(gateway, user, body.assistant, message.conversation_id)
    given = "images" in body.model_fields_set  # else the edited question's are kept
    question = _asked_again(
        request,
        user,
        message,
        assistant,
        body.options,
        messages=(question_message(body.message, ()),),
        images=asked_images(body, assistant) if given else None,
        edit=message.id,
    )
    return await answer_response(request, gateway, question, body.on_disconnect)


def _asked_again(
    request: Request,
    user: str,
    message: Message,
    assistant: Assistant,
    options: ChatOptions,
    **redo: Any,
) -> Question:
    """A question into ``message``'s conversation that redoes part of it (``regenerate``
    or ``edit`` in ``redo``, with what that needs), stored, answered by ``assistant``."""
    return Question(
        owner=user,
        messages=redo.pop("messages", ()),
        assistant=assistant.name,
        conversation_id=message.conversation_id,
        options=checked_options(assistant, options),
        persist=True,
        limit_key=limit_key(request),
        **redo,
    )


@router.post("/messages/{message_id}/feedback", openapi_extra=body_schema(FeedbackBody))
async def rate(message_id: str, request: Request, gateway: GatewayDep) -> dict[str, Any]:
    """Rate an answer 1 or -1 with an optional comment; rating again replaces it."""
    body = await read_json(request, FeedbackBody, gateway.settings.max_body_bytes)
    feedback = await store_of(gateway).set_feedback(
        gateway.user_of(request), _id(message_id, "message"), body.rating, body.comment
    )
    return {"message_id": message_id, **feedback.public()}
