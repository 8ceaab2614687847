"""OpenAI-compatible endpoints: ``GET /v1/models`` and ``POST /v1/chat/completions``.

A completion is an ordinary typewriter answer (``Chat.ask``): the same
generation task and broker stream as ``/v1/chat``, so it can be followed,
resumed or stopped like any other (its id is in ``X-Stream-Id``). Only the
bytes the client receives differ, and both responses reuse
:class:`EventStreamResponse` for everything else: the watcher that hears the
client leave and cancels the answer, the heartbeat, the shutdown registry.

How its endings map to OpenAI's finish reasons and errors: ``openai_completion``.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterable
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from typewriter.assistants import Assistant
from typewriter.chat import Question
from typewriter.errors import (
    BadRequest,
    InvalidField,
    MessageTooLong,
    NotFound,
    UnknownAssistant,
)
from typewriter.events import decode
from typewriter.jsonutil import dumps
from typewriter.streams.base import Entry, Subscription

from .body import ImageBodies, body_schema, read_json, too_long_fields
from .event_stream import (
    ClientWatch,
    EventStreamResponse,
    OnDisconnect,
    OpenStreams,
    encode_headers,
)
from .gateway import Gateway, GatewayDep
from .limit_key import limit_key
from .openai_completion import DONE, Completion, sse_data
from .openai_errors import OPENAI_TAG, OpenAIRoute
from .openai_schemas import CompletionRequest

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=[OPENAI_TAG], route_class=OpenAIRoute)

_STARTED = int(time.time())  # "created" of the models: when this process began serving them
_BODY_SCHEMA = body_schema(CompletionRequest)


class _Translated(Subscription):
    """A subscription whose entries carry OpenAI chunks as their wire bytes, so that
    :class:`EventStreamResponse` writes them without knowing the difference."""

    def __init__(self, inner: Subscription, completion: Completion) -> None:
        self._inner = inner
        self._translate = completion.translate
        self._plain_delta = completion.plain_delta

    @property
    def cursor(self) -> int:
        return self._inner.cursor

    async def next(self, deadline: float) -> list[Entry] | None:
        batch = await self._inner.next(deadline)
        if not batch:
            return batch
        translate, plain_delta = self._translate, self._plain_delta
        wire = b"".join(
            [
                (event == "delta" and plain_delta(data)) or translate(decode(event, data))
                for _, event, data, _ in batch
            ]
        )
        if not wire:
            return []  # start, or an error before its end: a wake-up with nothing to write
        seq, event, data, _ = batch[-1]
        return [(seq, event, data, wire)]

    def wake(self) -> None:
        self._inner.wake()

    async def close(self) -> None:
        await self._inner.close()


class CompletionStream(EventStreamResponse):
    """``stream: true``: ``chat.completion.chunk`` events ending in ``data: [DONE]``."""

    def __init__(self, subscription: Subscription, completion: Completion, **kwargs: Any) -> None:
        # No "retry:" block: OpenAI's SDK makes an event of a block without data and
        # fails to parse its empty data as JSON. The role chunk opens the stream instead.
        super().__init__(
            _Translated(subscription, completion),
            retry_ms=None,
            prelude=completion.chunk({"role": "assistant", "content": ""}),
            **kwargs,
        )
        self.completion = completion

    def epilogue(self, watch: ClientWatch) -> bytes:
        if self.registry.closing and not self.completion.ended:
            # An OpenAI client cannot resume: tell it the answer was cut, not finished.
            return sse_data(self.completion.interrupted()[1]) + DONE
        return b""


class CompletionResponse(Response):
    """``stream: false``: one ``chat.completion`` once the answer is complete.

    It waits under a :class:`ClientWatch` because a plain handler would not
    notice the client leave, and the model would go on generating for nobody;
    the watch cancels the answer as it does for ``/v1/chat``.
    """

    def __init__(
        self,
        subscription: Subscription,
        completion: Completion,
        *,
        registry: OpenStreams,
        heartbeat: float,
        headers: dict[str, str],
        on_disconnect: OnDisconnect,
    ) -> None:
        self.status_code = 200
        self.background = None
        self.subscription = subscription
        self.completion = completion
        self.registry = registry
        self.heartbeat = heartbeat
        self.on_disconnect = on_disconnect
        self.raw_headers = encode_headers(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        parts: list[str] = []
        loop = asyncio.get_running_loop()
        watch = ClientWatch(self.subscription, self.registry, receive, self.on_disconnect)
        async with watch:
            while (batch := await self.subscription.next(loop.time() + self.heartbeat)) is not None:
                if watch.ending:
                    break
                parts.extend(self.completion.apply(decode(e, data)) for _, e, data, _ in batch)
        if watch.disconnected:
            return
        status, body = self._result("".join(parts))
        payload = dumps(body).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
            *self.raw_headers,
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    def _result(self, text: str) -> tuple[int, dict[str, Any]]:
        completion = self.completion
        if not completion.ended:
            return completion.interrupted()
        if completion.error is not None:
            return completion.error
        return 200, completion.completion(text)


_FIELD_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_SHOWN_NAMES = 20


def ignored_header(names: Iterable[str]) -> dict[str, str]:
    """``X-Typewriter-Ignored-Fields``: the unknown fields no upstream of the assistant
    takes, so a client can tell its ``top_k`` did nothing. Refusing them instead would
    break the SDK's clients, which send fields typewriter has no use for (``metadata``,
    ``service_tier``, …). Names are the client's own text: only plain ones are
    shown, at most 20, the rest counted."""
    ordered = sorted(names)
    if not ordered:
        return {}
    plain = [n for n in ordered if _FIELD_NAME.fullmatch(n)][:_SHOWN_NAMES]
    rest = len(ordered) - len(plain)
    shown = ", ".join(plain + ([f"{rest} more"] if rest else []))
    return {"x-typewriter-ignored-fields": shown}


def _model_card(assistant: Assistant) -> dict[str, Any]:
    return {"id": assistant.name, "object": "model", "created": _STARTED, "owned_by": "typewriter"}


def _assistant(gateway: Gateway, name: str) -> Assistant:
    """The assistant a ``model`` names; an unknown one is OpenAI's ``404 model_not_found``."""
    try:
        return gateway.assistant(name)
    except UnknownAssistant:
        raise NotFound(
            f"the model {name[:100]!r} does not exist; GET /v1/models lists the assistants",
            code="model_not_found",
            param="model",
        ) from None


@router.get("/models")
async def list_models(gateway: GatewayDep) -> dict[str, Any]:
    """The assistants, as OpenAI lists models."""
    return {"object": "list", "data": [_model_card(a) for a in gateway.assistants.values()]}


@router.get("/models/{model:path}")
async def retrieve_model(model: str, gateway: GatewayDep) -> dict[str, Any]:
    """One assistant as an OpenAI model; ``404 model_not_found`` for any other name."""
    return _model_card(_assistant(gateway, model))


@router.post("/chat/completions", openapi_extra=_BODY_SCHEMA)
async def chat_completions(request: Request, gateway: GatewayDep) -> Response:
    """OpenAI's Chat Completions; ``model`` is an assistant's name."""
    settings = gateway.settings
    images = ImageBodies(settings.max_image_bytes, b'"image_url"', CompletionRequest.image_bytes)
    body = await read_json(request, CompletionRequest, settings.max_body_bytes, images)
    assistant = _assistant(gateway, body.model)
    messages = body.chat_messages()
    image = body.first_image()
    if image is not None and not assistant.accepts_images:
        raise BadRequest(
            f"the model {assistant.name!r} does not accept images; send text only, or "
            "choose a model that accepts images (accepts_images in GET /v1/assistants)",
            code="images_not_supported",
            param=image,
        )
    unknown = body.unknown_fields()
    passable = assistant.backend.passable_fields()
    options = body.generation_options({k: v for k, v in unknown.items() if k in passable})
    ignored = ignored_header(name for name in unknown if name not in passable)
    bounds = [
        {**f, "field": body.max_tokens_param if f["field"] == "max_tokens" else f["field"]}
        for f in assistant.out_of_bounds(options)
    ]
    if bounds:
        raise InvalidField.of(bounds)
    user = gateway.user_of(request)
    question = Question(
        owner=user,
        messages=messages,
        assistant=assistant.name,
        options=options,
        limit_key=limit_key(request),
    )
    try:
        answer = await gateway.chat.ask(question)
    except MessageTooLong as exc:  # named as pydantic names a list member
        raise too_long_fields(exc, lambda index: f"messages.{index}.content") from None
    subscription = await gateway.streams.subscribe(answer.stream_id, user, 0)

    async def stop_generating() -> None:
        await gateway.control.cancel(answer.stream_id, user)

    completion = Completion(
        answer.message_id, assistant.name, body.include_usage, gather=not body.stream
    )
    common: dict[str, Any] = {
        "registry": gateway.open_streams,
        "heartbeat": gateway.settings.heartbeat,
        "headers": {"x-stream-id": answer.stream_id, **ignored},
        "on_disconnect": stop_generating,
    }
    if body.stream:
        return CompletionStream(subscription, completion, **common)
    return CompletionResponse(subscription, completion, **common)
