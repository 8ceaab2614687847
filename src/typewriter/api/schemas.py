"""Request bodies as pydantic models: strict types, no unknown fields, clear 422s.

Strict because a gateway should not guess: ``"message": 42`` is a client bug
to report, not a question to answer, and a misspelt option silently ignored is
worse than a refusal that names it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from typewriter.ids import ID_PATTERN
from typewriter.images import Image, read_data_uri
from typewriter.models.base import GenerationOptions, Simulation

__all__ = [
    "encodable",
    "AskBody",
    "ChatBody",
    "EditBody",
    "ChatOptions",
    "FeedbackBody",
    "ImageUpload",
    "NewConversation",
    "RegenerateBody",
    "Rename",
    "SimulateOptions",
]


def encodable(value: str) -> str:
    """A lone surrogate (``"\\ud800"`` is valid JSON) could never be stored or sent as UTF-8."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"contains an unpaired surrogate at position {exc.start}; send valid Unicode"
        ) from None
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class SimulateOptions(_Strict):
    """Knobs of the simulated model (API.md §9); other backends ignore them."""

    tokens_per_second: float | None = Field(None, gt=0, le=100_000)
    first_token_delay_ms: float = Field(0, ge=0, le=600_000)
    fail_after_tokens: int | None = Field(None, ge=0)
    stall_after_tokens: int | None = Field(None, ge=0)
    timestamps: bool = Field(
        False, description="each piece is the time it was produced (latency benchmarks)"
    )
    echo_history: bool = Field(False, description="answer with the messages the model received")


class ChatOptions(_Strict):
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1, le=1_000_000)
    simulate: SimulateOptions | None = None

    def to_generation(self) -> GenerationOptions:
        sim = self.simulate
        return GenerationOptions(
            temperature=self.temperature,
            top_p=self.top_p,
            max_tokens=self.max_tokens,
            simulate=Simulation(**sim.model_dump()) if sim is not None else None,
        )


MAX_IMAGES = 8


class ImageUpload(_Strict):
    """An image sent with a question, as its bytes in a ``data:`` URI."""

    data_url: str = Field(description="data:image/(png|jpeg|gif|webp);base64,…")

    @field_validator("data_url")
    @classmethod
    def _an_image(cls, value: str) -> str:
        read_data_uri(value)  # ValueError saying what is wrong: 422 naming the field
        return value

    def image(self) -> Image:
        return read_data_uri(self.data_url)


class AskBody(_Strict):
    """What every question carries: ``POST /v1/chat``'s body, and an edit's. The message is
    kept exactly as sent: nothing is stripped."""

    message: str = Field(min_length=1, description="the question; any non-empty string")
    assistant: str | None = Field(
        None,
        description="an assistant from GET /v1/assistants; default: the conversation's "
        "assistant, else the server's default (GET /v1/assistants 'default')",
    )
    options: ChatOptions = ChatOptions()
    on_disconnect: Literal["cancel", "continue"] = Field(
        "cancel", description="direct mode: what closing the response does to the answer"
    )
    images: list[ImageUpload] = Field(
        default_factory=list,
        max_length=MAX_IMAGES,
        description="images for an assistant that accepts them (accepts_images), stored "
        "with the question",
    )

    @field_validator("message")
    @classmethod
    def _encodable(cls, value: str) -> str:
        return encodable(value)

    @staticmethod
    def image_bytes(body: Any) -> int:
        """The characters of a parsed body's image ``data_url``s, before it is validated
        (for ``ImageBodies``): what may pass ``max_body_bytes``."""
        images = body.get("images") if isinstance(body, dict) else None
        urls = (i.get("data_url") for i in images if isinstance(i, dict)) if images else ()
        return sum(len(url) for url in urls if isinstance(url, str) and url.startswith("data:"))


class ChatBody(AskBody):
    """``POST /v1/chat``: a question, into a conversation or starting one."""

    conversation_id: str | None = Field(None, pattern=ID_PATTERN)
    parent_id: str | None = Field(
        None,
        pattern=ID_PATTERN,
        description="the answer this question follows (its branch is the history the model "
        "sees); default: the conversation's newest message",
    )


class EditBody(AskBody):
    """``POST /v1/messages/{id}/edit``: the question's new text. Without ``images`` the
    new version keeps the edited question's images; ``"images": []`` sends it without."""


class RegenerateBody(_Strict):
    """``POST /v1/messages/{id}/regenerate``; everything optional."""

    assistant: str | None = Field(
        None,
        description="default: the conversation's assistant, else the server's default",
    )
    options: ChatOptions = ChatOptions()
    on_disconnect: Literal["cancel", "continue"] = "cancel"


class NewConversation(_Strict):
    title: str | None = Field(None, min_length=1, max_length=200)
    assistant: str | None = Field(
        None, description="default: the server's default (GET /v1/assistants 'default')"
    )


class Rename(_Strict):
    title: str = Field(min_length=1, max_length=200)


class FeedbackBody(_Strict):
    rating: int = Field(description="1 (good) or -1 (bad)")
    comment: str | None = Field(None, max_length=10_000)

    @field_validator("rating")
    @classmethod
    def _plus_or_minus_one(cls, value: int) -> int:
        # Literal[1, -1] would take 1.0 and True (they equal 1); a rating is exactly 1 or -1
        if value not in (1, -1) or isinstance(value, bool):
            raise ValueError(f"rating must be 1 or -1, not {value}")
        return value


class TicketBody(_Strict):
    """``POST /v1/tickets``: a stream's events URL, or without ``stream_id`` the channel's."""

    stream_id: str | None = Field(None, max_length=100)
