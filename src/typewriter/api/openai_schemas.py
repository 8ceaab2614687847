"""OpenAI's Chat Completions wire format: the request body and the answer.

The request model is lenient where OpenAI's clients need it and strict where a
silent guess would hurt. Clients built on the SDK send many fields typewriter
has no use for (``tools``, ``metadata``, ``service_tier``, …), so unknown fields
are not refused: they go to the upstreams that take them (``pass_fields``) and
are named in a response header otherwise. But a known field of the wrong type
(``"temperature": "hot"``) is a client bug, refused with ``400`` and the field
named in ``param`` the way OpenAI does; the standard fields that pass go to the
upstream as the client gave them.

How typewriter's endings read to an OpenAI client (:class:`Completion`):

- ``stop`` → ``stop``; ``length`` → ``length``; ``cancelled`` (someone pressed
  Stop, e.g. ``POST /v1/streams/{id}/cancel``) → ``stop``: the partial answer is
  the answer, and OpenAI has no "cancelled" that its clients would understand.
- ``error`` / ``timeout`` → an error, also when some text came first: a client
  could not tell a cut answer from a whole one otherwise (the partial text stays
  readable through the stream). Streamed: ``data: {"error": …}`` then
  ``data: [DONE]``, as OpenAI and vLLM do once the status is already 200. Not
  streamed: the status of the ``error`` event's code (502, 503 or 504).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from typewriter.errors import ModelError
from typewriter.events import AnswerEvent, Delta, End, Error, Reasoning, ToolCall
from typewriter.jsonutil import dumps
from typewriter.messages import ChatMessage
from typewriter.models.base import GenerationOptions
from typewriter.upstreams import PASSED_FIELDS

from .openai_errors import openai_error
from .schemas import encodable

__all__ = [
    "DONE",
    "Completion",
    "CompletionRequest",
    "Message",
    "sse_data",
]

# What each accepted role means to the model; OpenAI's newer "developer" role
# is the system role under another name.
_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


class _Lenient(BaseModel):
    """Unknown fields ignored; known fields strictly typed, finite numbers only."""

    model_config = ConfigDict(extra="ignore", strict=True, allow_inf_nan=False)


class Message(_Lenient):
    role: str
    content: str | None = Field(None, validate_default=True)
    name: str | None = None

    @field_validator("role")
    @classmethod
    def _known_role(cls, value: str) -> str:
        if value not in _ROLES:
            raise ValueError(
                f"role {value[:40]!r} is not supported: use system, developer, user or "
                "assistant (tool calls are not supported)"
            )
        return value

    @field_validator("content", mode="before")
    @classmethod
    def _join_text_parts(cls, value: Any) -> Any:
        """A list of ``{"type": "text", "text": …}`` parts is their text, concatenated."""
        if not isinstance(value, list):
            return value  # a string or null; the field's type refuses anything else
        texts = []
        for index, part in enumerate(value):
            kind = part.get("type") if isinstance(part, dict) else None
            text = part.get("text") if isinstance(part, dict) else None
            if kind != "text" or not isinstance(text, str):
                shown = f"type {str(kind)[:40]!r}" if kind is not None else "no type"
                raise ValueError(
                    f"content part {index} has {shown}: only text parts "
                    '({"type": "text", "text": "..."}) are supported'
                )
            texts.append(text)
        return "".join(texts)

    @field_validator("content")
    @classmethod
    def _present_and_encodable(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            if info.data.get("role") != "assistant":
                raise ValueError("content is required (only an assistant message may omit it)")
            return value
        return encodable(value)  # the same rule as /v1/chat

    def to_chat(self) -> ChatMessage:
        return ChatMessage(_ROLES[self.role], self.content or "")


class StreamOptions(_Lenient):
    """``include_usage`` decides the usage chunk; other options (vLLM's
    ``continuous_usage_stats``) go to the upstream as given."""

    model_config = ConfigDict(extra="allow")

    include_usage: bool | None = None


_RESPONSE_FORMATS = ("text", "json_object", "json_schema")
_SCHEMA_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _check_response_format(value: Any) -> None:
    """OpenAI's rules for ``response_format``; the value itself goes upstream untouched."""
    if not isinstance(value, dict):
        raise ValueError("response_format must be an object with a type")
    kind = value.get("type")
    if kind not in _RESPONSE_FORMATS:
        raise ValueError(f"response_format.type must be one of {', '.join(_RESPONSE_FORMATS)}")
    if kind != "json_schema":
        return
    spec = value.get("json_schema")
    if not isinstance(spec, dict):
        raise ValueError("response_format.json_schema is required with type json_schema")
    name = spec.get("name")
    if not isinstance(name, str) or not _SCHEMA_NAME.fullmatch(name):
        raise ValueError(
            "response_format.json_schema.name is required: 1 to 64 of a-z, A-Z, 0-9, _ and -"
        )
    if "schema" in spec and not isinstance(spec["schema"], dict):
        raise ValueError("response_format.json_schema.schema must be an object")
    if "strict" in spec and not isinstance(spec["strict"], bool | None):
        raise ValueError("response_format.json_schema.strict must be a boolean")


class CompletionRequest(_Lenient):
    """``POST /v1/chat/completions``: what typewriter checks and sends upstream.

    Unknown fields are kept aside (``model_extra``): the route sends on those the
    assistant's upstreams take (``pass_fields``) and names the others in a header.
    """

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, description="an assistant from GET /v1/models")
    messages: list[Message] = Field(min_length=1)
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    n: int | None = None
    stop: str | list[str] | None = None
    user: str | None = None
    seed: int | None = None
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    logit_bias: dict[str, float] | None = None
    response_format: dict[str, Any] | None = None

    @field_validator("logit_bias")
    @classmethod
    def _token_biases(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        """Token ids (as strings, JSON keys being strings) to biases from -100 to 100."""
        for token, bias in (value or {}).items():
            if not token.isdigit() or not -100 <= bias <= 100:
                raise ValueError(
                    f"logit_bias maps token ids to -100..100; {token[:20]!r}: {bias} is not that"
                )
        return value

    @field_validator("top_logprobs")
    @classmethod
    def _with_logprobs(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and info.data.get("logprobs") is not True:
            raise ValueError("top_logprobs needs logprobs: true")
        return value

    @field_validator("response_format", mode="before")
    @classmethod
    def _known_format(cls, value: Any) -> Any:
        """One error naming ``response_format``, with the rule that was broken."""
        if value is not None:
            _check_response_format(value)
        return value

    @field_validator("stop", mode="before")
    @classmethod
    def _string_or_strings(cls, value: Any) -> Any:
        """One error naming ``stop``, rather than one per member of the union."""
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
        raise ValueError("stop must be a string or a list of strings")

    @field_validator("n")
    @classmethod
    def _one_choice(cls, value: int | None) -> int | None:
        if value is not None and value != 1:
            raise ValueError(f"n={value} is not supported: typewriter answers with one choice")
        return value

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    @property
    def max_tokens_param(self) -> str:
        """The name the client used for the token limit, for error messages."""
        return "max_completion_tokens" if self.max_completion_tokens is not None else "max_tokens"

    def unknown_fields(self) -> dict[str, Any]:
        """The fields outside the standard, as the client sent them."""
        return dict(self.model_extra or {})

    def generation_options(self, vendor: dict[str, Any] | None = None) -> GenerationOptions:
        """``max_completion_tokens`` (OpenAI's newer name) wins over ``max_tokens``, and
        goes upstream under the name the client used."""
        limit = self.max_completion_tokens
        params = {
            name: getattr(self, name) for name in PASSED_FIELDS if getattr(self, name) is not None
        }
        if self.stream_options is not None:
            params["stream_options"] = self.stream_options.model_dump(exclude_none=True)
        return GenerationOptions(
            temperature=self.temperature,
            top_p=self.top_p,
            max_tokens=limit if limit is not None else self.max_tokens,
            max_tokens_name=self.max_tokens_param,
            params=params,
            vendor=vendor or {},
        )

    def chat_messages(self) -> tuple[ChatMessage, ...]:
        return tuple(m.to_chat() for m in self.messages)


_FINISH = {
    "stop": "stop",
    "length": "length",
    "cancelled": "stop",
    "tool_calls": "tool_calls",
    "content_filter": "content_filter",
}


def _model_errors(kind: type[ModelError] = ModelError) -> Iterator[type[ModelError]]:
    """The model's error classes, the whole subtree: a new one needs no entry here."""
    yield kind
    for sub in kind.__subclasses__():
        yield from _model_errors(sub)


_ERROR_STATUS = {c.code: c.status for c in _model_errors()}
_ERROR_STATUS["interrupted"] = 503  # the server shut down mid-answer: ask again
DONE = b"data: [DONE]\n\n"


def sse_data(value: Any) -> bytes:
    return b"data: " + dumps(value).encode() + b"\n\n"


def _error(code: str, message: str) -> tuple[int, dict[str, Any]]:
    status = _ERROR_STATUS.get(code, 500)
    return openai_error(status, {"error": {"code": code, "message": message}})


class Completion:
    """One answer through OpenAI's eyes: fed the stream's events in order, it knows
    how the answer ended and writes the chunks and bodies that say so.

    Besides the text it relays the model's reasoning (``reasoning_content``, the
    name DeepSeek's API and vLLM gave it and clients read), tool-call fragments one
    for one as the upstream streamed them, and the ``logprobs`` of each piece. For a
    response that is not streamed it gathers them: the reasoning joined, each call's
    fragments joined by ``index``, the logprobs' ``content`` lists one after another.
    """

    def __init__(self, message_id: str, model: str, include_usage: bool) -> None:
        self.id = "chatcmpl-" + message_id.removeprefix("msg_")  # ties it to the stored message
        self.created = int(time.time())
        self.model = model
        self.include_usage = include_usage
        self.ended = False
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] | None = None
        self.error: tuple[int, dict[str, Any]] | None = None  # (status, OpenAI error body)
        self._reasoning: list[str] = []
        self._calls: dict[int, dict[str, Any]] = {}
        self._logprobs: list[Any] | None = None

    def apply(self, event: AnswerEvent) -> str:
        """Take one event in; return the text it adds to the answer."""
        if isinstance(event, Delta):
            if event.logprobs is not None:
                self._gather_logprobs(event.logprobs)
            return event.text
        if isinstance(event, Reasoning):
            self._reasoning.append(event.text)
        elif isinstance(event, ToolCall):
            self._gather_call(event)
        elif isinstance(event, Error):
            self.error = _error(event.code, event.message)
        elif isinstance(event, End):
            self.ended = True
            self.usage = event.usage.to_dict() if event.usage is not None else None
            self.finish_reason = _FINISH.get(event.finish_reason)
            if self.finish_reason is None and self.error is None:
                self.error = _error("upstream_error", f"the answer ended {event.finish_reason!r}")
        return ""

    def _gather_call(self, call: ToolCall) -> None:
        gathered = self._calls.setdefault(
            call.index, {"id": "", "type": "function", "function": {"name": "", "arguments": ""}}
        )
        if call.id is not None:
            gathered["id"] = call.id
        function = gathered["function"]
        if call.function is not None:
            function["name"] += call.function
        function["arguments"] += call.arguments

    def _gather_logprobs(self, logprobs: dict[str, Any]) -> None:
        content = logprobs.get("content")
        if isinstance(content, list):
            self._logprobs = (self._logprobs or []) + content

    def _envelope(self, kind: str, **fields: Any) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": kind,
            "created": self.created,
            "model": self.model,
            **fields,
        }

    def chunk(
        self,
        delta: dict[str, Any],
        finish_reason: str | None = None,
        logprobs: dict[str, Any] | None = None,
    ) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}
        extra = {"usage": None} if self.include_usage else {}
        return sse_data(self._envelope("chat.completion.chunk", choices=[choice], **extra))

    def translate(self, event: AnswerEvent) -> bytes:
        """The SSE bytes an OpenAI client gets for one typewriter event."""
        text = self.apply(event)
        if isinstance(event, Delta):
            return self.chunk({"content": text}, logprobs=event.logprobs)
        if isinstance(event, Reasoning):
            return self.chunk({"reasoning_content": event.text})
        if isinstance(event, ToolCall):
            return self.chunk({"tool_calls": [tool_call_fragment(event)]})
        if not isinstance(event, End):
            return b""  # start: the role chunk opened the response; error: sent with end
        if self.error is not None:
            return sse_data(self.error[1]) + DONE
        tail = self.chunk({}, self.finish_reason)
        if self.include_usage:
            tail += sse_data(self._envelope("chat.completion.chunk", choices=[], usage=self.usage))
        return tail + DONE

    def interrupted(self) -> tuple[int, dict[str, Any]]:
        return _error("interrupted", "the server is shutting down; ask again")

    def completion(self, text: str) -> dict[str, Any]:
        calls = [self._calls[index] for index in sorted(self._calls)]
        message: dict[str, Any] = {
            "role": "assistant",
            "content": text if text or not calls else None,
            "refusal": None,
        }
        if self._reasoning:
            message["reasoning_content"] = "".join(self._reasoning)
        if calls:
            message["tool_calls"] = calls
        logprobs = {"content": self._logprobs} if self._logprobs is not None else None
        choice = {
            "index": 0,
            "message": message,
            "logprobs": logprobs,
            "finish_reason": self.finish_reason,
        }
        return self._envelope("chat.completion", choices=[choice], usage=self.usage)


def tool_call_fragment(call: ToolCall) -> dict[str, Any]:
    """A fragment in OpenAI's streamed form: ``id`` and ``type`` with the call's first
    fragment, ``function.name`` when given, and its piece of ``arguments``."""
    fragment: dict[str, Any] = {"index": call.index}
    if call.id is not None:
        fragment["id"] = call.id
        fragment["type"] = "function"
    function: dict[str, Any] = {}
    if call.function is not None:
        function["name"] = call.function
    function["arguments"] = call.arguments
    fragment["function"] = function
    return fragment
