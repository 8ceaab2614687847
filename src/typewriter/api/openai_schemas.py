"""OpenAI's Chat Completions request body: what is checked, and what goes upstream.

The request model is lenient where OpenAI's clients need it and strict where a
silent guess would hurt. Clients built on the SDK send many fields typewriter
has no use for (``metadata``, ``service_tier``, …), so unknown fields
are not refused: they go to the upstreams that take them (``pass_fields``) and
are named in a response header otherwise. But a known field of the wrong type
(``"temperature": "hot"``) is a client bug, refused with ``400`` and the field
named in ``param`` the way OpenAI does; the standard fields that pass go to the
upstream as the client gave them.

Tools are relayed, not run: ``tools``, ``tool_choice`` and
``parallel_tool_calls`` are checked against OpenAI's rules and go upstream as
given; history may hold an assistant's ``tool_calls`` and the ``tool`` messages
answering them. A ``tool`` message whose ``tool_call_id`` answers no earlier
call goes too: the upstream decides (OpenAI refuses it, a local template
renders it), the gateway does not hold a stricter rule than the model behind it.

The answer, in the same wire format, is written by ``openai_completion``.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from typewriter.errors import InvalidField
from typewriter.images import read_data_uri
from typewriter.messages import ChatMessage, ContentPart
from typewriter.models.base import GenerationOptions
from typewriter.upstreams import PASSED_FIELDS

from .schemas import encodable

__all__ = ["MAX_TOOLS", "CompletionRequest", "Message"]

MAX_TOOLS = 128
"""Most functions one request may declare: OpenAI's own limit."""

# What each accepted role means to the model; OpenAI's newer "developer" role
# is the system role under another name.
_ROLES = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
    "tool": "tool",
}
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
"""A function's (and a JSON schema's) name, as OpenAI allows it."""


def _plain_json(value: Any, where: str) -> None:
    """Refuse what JSON parses but the upstream request could not carry: a lone surrogate
    (``"\\ud800"``) in a string or key, or ``NaN``/``Infinity`` (Python reads them)."""
    if isinstance(value, str):
        try:
            encodable(value)
        except ValueError as exc:
            raise ValueError(f"{where} {exc}") from None
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where} contains {value}, which JSON cannot carry")
    elif isinstance(value, dict):
        for key, item in value.items():
            _plain_json(key, where)
            _plain_json(item, where)
    elif isinstance(value, list):
        for item in value:
            _plain_json(item, where)


class _Lenient(BaseModel):
    """Unknown fields ignored; known fields strictly typed, finite numbers only."""

    model_config = ConfigDict(extra="ignore", strict=True, allow_inf_nan=False)


class CalledFunction(_Lenient):
    name: str = Field(min_length=1)
    arguments: str = Field(description="the arguments as the model wrote them: JSON text")

    @field_validator("name", "arguments")
    @classmethod
    def _sendable(cls, value: str) -> str:
        return encodable(value)


class MessageToolCall(_Lenient):
    """A call the model made, in an assistant message of the history."""

    id: str = Field(min_length=1)
    type: str
    function: CalledFunction

    @field_validator("type")
    @classmethod
    def _function(cls, value: str) -> str:
        if value != "function":
            raise ValueError(f"type {value[:40]!r} is not supported: only function calls")
        return value

    @field_validator("id")
    @classmethod
    def _sendable(cls, value: str) -> str:
        return encodable(value)


class Message(_Lenient):
    role: str
    content: str | list[Any] | None = Field(None, validate_default=True)
    name: str | None = None
    tool_calls: list[MessageToolCall] | None = None
    tool_call_id: str | None = Field(None, validate_default=True)

    @field_validator("role")
    @classmethod
    def _known_role(cls, value: str) -> str:
        if value not in _ROLES:
            raise ValueError(
                f"role {value[:40]!r} is not supported: use system, developer, user, "
                "assistant or tool"
            )
        return value

    @field_validator("name")
    @classmethod
    def _sendable_name(cls, value: str | None) -> str | None:
        return value if value is None else encodable(value)

    @field_validator("tool_calls")
    @classmethod
    def _assistant_calls(
        cls, value: list[MessageToolCall] | None, info: ValidationInfo
    ) -> list[MessageToolCall] | None:
        """Only the assistant calls tools; an empty list is no calls (some clients send
        ``[]`` on every assistant turn), and is not sent upstream."""
        role = info.data.get("role")
        if value and role is not None and role != "assistant":
            raise ValueError(f"tool_calls is only for assistant messages, not {role}")
        return value or None

    @field_validator("tool_call_id")
    @classmethod
    def _answers_a_call(cls, value: str | None, info: ValidationInfo) -> str | None:
        role = info.data.get("role")
        if role == "tool" and not value:
            raise ValueError("a tool message needs tool_call_id: the id of the call it answers")
        if role is not None and role != "tool" and value is not None:
            raise ValueError(f"tool_call_id is only for tool messages, not {role}")
        return value if value is None else encodable(value)

    @field_validator("content", mode="before")
    @classmethod
    def _text_or_parts(cls, value: Any) -> Any:
        """One error naming ``content``, rather than one per member of the union."""
        if value is None or isinstance(value, str | list):
            return value
        raise ValueError("content must be a string or a list of content parts")

    @field_validator("content")
    @classmethod
    def _present_and_encodable(
        cls, value: str | list[Any] | None, info: ValidationInfo
    ) -> str | list[Any] | None:
        """A list of parts is checked part by part by :meth:`to_chat`, which can name them."""
        if value is None:
            if info.data.get("role") != "assistant":
                raise ValueError("content is required (only an assistant message may omit it)")
            return value
        if isinstance(value, list):
            return value
        return encodable(value)  # the same rule as /v1/chat

    def to_chat(self) -> ChatMessage:
        """The message; ValueError ``(part index, reason)`` for a part that cannot be sent.

        A list of parts keeps its parts in their order when it holds an image, and is
        its text, concatenated, either way (what the limits and the estimate count)."""
        role = _ROLES[self.role]
        text: str = self.content if isinstance(self.content, str) else ""
        parts: tuple[ContentPart, ...] = ()
        if isinstance(self.content, list):
            parts = tuple(_part(index, part, role) for index, part in enumerate(self.content))
            text = "".join(p.text for p in parts if p.type == "text")
            if not any(p.type == "image_url" for p in parts):
                parts = ()
        return ChatMessage(
            role,
            text,
            parts,
            tool_calls=tuple(call.model_dump() for call in self.tool_calls or ()),
            tool_call_id=self.tool_call_id,
            name=self.name,
        )


_DETAILS = ("auto", "low", "high")


class PartError(ValueError):
    """A content part that cannot be sent: ``index`` is its place in ``content``."""

    def __init__(self, index: int, reason: str) -> None:
        super().__init__(reason)
        self.index = index
        self.reason = reason


def _part(index: int, part: Any, role: str) -> ContentPart:
    """One content part, checked: text, or (in a user message) an image by URL."""
    kind = part.get("type") if isinstance(part, dict) else None
    if kind == "text":
        text = part.get("text")
        if not isinstance(text, str):
            raise PartError(index, "a text part needs a string 'text'")
        try:
            return ContentPart("text", text=encodable(text))
        except ValueError as exc:
            raise PartError(index, str(exc)) from None
    if kind != "image_url":
        shown = f"type {str(kind)[:40]!r}" if kind is not None else "no type"
        raise PartError(
            index,
            f"a content part with {shown} is not supported: only text parts "
            '({"type": "text", "text": "..."}) and image_url parts '
            '({"type": "image_url", "image_url": {"url": "..."}})',
        )
    if role != "user":
        raise PartError(index, "images go in user messages only")
    image = part.get("image_url")
    if isinstance(image, str):
        image = {"url": image}  # the shorthand some clients send
    url = image.get("url") if isinstance(image, dict) else None
    if not isinstance(url, str):
        raise PartError(index, "an image_url part needs image_url.url, a string")
    detail = image.get("detail")
    if detail is not None and detail not in _DETAILS:
        raise PartError(index, f"image_url.detail must be one of {', '.join(_DETAILS)}")
    if url.startswith("data:"):
        try:
            read_data_uri(url)
        except ValueError as exc:
            raise PartError(index, str(exc)) from None
    elif not url.startswith(("http://", "https://")) or len(url) <= len("https://"):
        raise PartError(
            index,
            "image_url.url must be an http(s) URL or a data:image/(png|jpeg|gif|webp);base64, URI",
        )
    return ContentPart("image_url", url=url, detail=detail)


class StreamOptions(_Lenient):
    """``include_usage`` decides the usage chunk; other options (vLLM's
    ``continuous_usage_stats``) go to the upstream as given."""

    model_config = ConfigDict(extra="allow")

    include_usage: bool | None = None


_RESPONSE_FORMATS = ("text", "json_object", "json_schema")
_SCHEMA_NAME = _NAME


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


class FunctionSpec(_Lenient):
    """A declared function; fields beyond OpenAI's go upstream too (``exclude_unset``
    dumps it as the client wrote it)."""

    model_config = ConfigDict(extra="allow")

    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = Field(None, description="a JSON Schema object")
    strict: bool | None = None

    @field_validator("name")
    @classmethod
    def _named(cls, value: str) -> str:
        if not _NAME.fullmatch(value):
            raise ValueError(
                f"function name {value[:70]!r} must be 1 to 64 of a-z, A-Z, 0-9, _ and -"
            )
        return value


class Tool(_Lenient):
    """One entry of ``tools``: only OpenAI's function tools can be relayed."""

    model_config = ConfigDict(extra="allow")

    type: str
    function: FunctionSpec | None = Field(None, validate_default=True)

    @field_validator("type")
    @classmethod
    def _function_tool(cls, value: str) -> str:
        if value != "function":
            raise ValueError(
                f"tool type {value[:40]!r} is not supported: only function tools "
                '({"type": "function", "function": {"name", ...}})'
            )
        return value

    @field_validator("function")
    @classmethod
    def _declared(cls, value: FunctionSpec | None, info: ValidationInfo) -> FunctionSpec | None:
        if value is None and info.data.get("type") == "function":
            raise ValueError('a function tool needs function: {"name", ...}')
        return value


_CHOICES = ("none", "auto", "required")


def _check_tool_choice(value: Any, tools: list[Tool] | None) -> None:
    """OpenAI's rules for ``tool_choice``: a mode, or one declared function by name."""
    if tools is None:
        raise ValueError("tool_choice needs tools")
    if isinstance(value, str):
        if value not in _CHOICES:
            raise ValueError(f"tool_choice must be one of {', '.join(_CHOICES)} or a function")
        return
    function = value.get("function") if isinstance(value, dict) else None
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(value, dict) or value.get("type") != "function" or not isinstance(name, str):
        raise ValueError(
            'tool_choice must be none, auto, required or {"type": "function", '
            '"function": {"name": ...}}'
        )
    declared = {tool.function.name for tool in tools if tool.function is not None}
    if name not in declared:
        raise ValueError(f"tool_choice names the function {name[:70]!r}, which tools lacks")


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
    tools: list[Tool] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None

    @field_validator("tools", mode="before")
    @classmethod
    def _some_plain_tools(cls, value: Any) -> Any:
        """Checked before any tool is validated: a list of thousands costs its validation."""
        if isinstance(value, list) and not value:
            raise ValueError("tools is empty: leave it out, or declare at least one function")
        if isinstance(value, list) and len(value) > MAX_TOOLS:
            raise ValueError(f"tools declares {len(value)} functions; at most {MAX_TOOLS}")
        _plain_json(value, "tools")
        return value

    @field_validator("tools")
    @classmethod
    def _distinct_names(cls, value: list[Tool] | None) -> list[Tool] | None:
        names = Counter(tool.function.name for tool in value or () if tool.function is not None)
        twice = sorted(name for name, count in names.items() if count > 1)
        if twice:
            raise ValueError(f"tools declares {twice[0]!r} more than once")
        return value

    @field_validator("tool_choice", mode="before")
    @classmethod
    def _known_choice(cls, value: Any, info: ValidationInfo) -> Any:
        """One error naming ``tool_choice``; a function it names must be declared. Not
        checked again when ``tools`` itself was refused (its own error says why)."""
        if value is not None and "tools" in info.data:
            _check_tool_choice(value, info.data["tools"])
            _plain_json(value, "tool_choice")
        return value

    @field_validator("parallel_tool_calls")
    @classmethod
    def _with_tools(cls, value: bool | None, info: ValidationInfo) -> bool | None:
        if value is not None and info.data.get("tools", ()) is None:
            raise ValueError("parallel_tool_calls needs tools")
        return value

    @field_validator("stop", "user", "response_format")
    @classmethod
    def _sendable(cls, value: Any, info: ValidationInfo) -> Any:
        """Strings and schemas that the upstream request can carry (no lone surrogate, no
        ``NaN``): caught here, they are a ``400`` naming the field, not a failed answer."""
        _plain_json(value, str(info.field_name))
        return value

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
        goes upstream under the name the client used. The other standard fields go as
        the client wrote them: ``exclude_unset`` keeps what it gave, down to a ``null``
        inside a tool's schema, and adds nothing it left out."""
        limit = self.max_completion_tokens
        given = self.model_dump(include=set(PASSED_FIELDS), exclude_unset=True)
        params = {name: value for name, value in given.items() if value is not None}
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
        """The messages, every part that cannot be sent refused with its place named."""
        chat: list[ChatMessage] = []
        problems: list[dict[str, str]] = []
        for i, message in enumerate(self.messages):
            try:
                chat.append(message.to_chat())
            except PartError as exc:
                problems.append(
                    {"field": f"messages.{i}.content.{exc.index}", "message": exc.reason}
                )
        if problems:
            raise InvalidField.of(problems)
        return tuple(chat)

    @staticmethod
    def image_bytes(body: Any) -> int:
        """The characters of the ``data:`` URIs of a parsed body's image parts, before it
        is validated (for ``ImageBodies``): an image by URL is a few bytes like text."""
        total = 0
        messages = body.get("messages") if isinstance(body, dict) else None
        for message in messages if isinstance(messages, list) else ():
            content = message.get("content") if isinstance(message, dict) else None
            for part in content if isinstance(content, list) else ():
                if not isinstance(part, dict) or part.get("type") != "image_url":
                    continue
                image = part.get("image_url")
                url = image.get("url") if isinstance(image, dict) else image
                if isinstance(url, str) and url.startswith("data:"):
                    total += len(url)
        return total

    def first_image(self) -> str | None:
        """Where the first image part is (``messages[0].content[1]``), if there is one."""
        for i, message in enumerate(self.messages):
            if isinstance(message.content, list):
                for j, part in enumerate(message.content):
                    if isinstance(part, dict) and part.get("type") == "image_url":
                        return f"messages[{i}].content[{j}]"
        return None
