"""OpenAI's Chat Completions request body: what is checked, and what goes upstream.

The request model is lenient where OpenAI's clients need it and strict where a
silent guess would hurt. Clients built on the SDK send many fields typewriter
has no use for (``tools``, ``metadata``, ``service_tier``, …), so unknown fields
are not refused: they go to the upstreams that take them (``pass_fields``) and
are named in a response header otherwise. But a known field of the wrong type
(``"temperature": "hot"``) is a client bug, refused with ``400`` and the field
named in ``param`` the way OpenAI does; the standard fields that pass go to the
upstream as the client gave them.

The answer, in the same wire format, is written by ``openai_completion``.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from typewriter.messages import ChatMessage
from typewriter.models.base import GenerationOptions
from typewriter.upstreams import PASSED_FIELDS

from .schemas import encodable

__all__ = ["CompletionRequest", "Message"]

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
