"""What the store hands out: plain frozen records, and their public JSON form."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from typewriter.messages import ChatMessage

__all__ = ["Attachment", "Conversation", "Feedback", "Message", "Turn"]


@dataclass(frozen=True, slots=True)
class Attachment:
    """An image stored with a message: what is known of it without reading its bytes."""

    id: str
    message_id: str
    media_type: str
    size: int

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "media_type": self.media_type,
            "size": self.size,
            "url": f"/v1/attachments/{self.id}",
        }


@dataclass(frozen=True, slots=True)
class Conversation:
    id: str
    owner: str
    title: str
    assistant: str
    created_at: float
    updated_at: float

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "assistant": self.assistant,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


@dataclass(frozen=True, slots=True)
class Feedback:
    message_id: str
    rating: int
    comment: str | None
    created_at: float

    def public(self) -> dict[str, Any]:
        return {"rating": self.rating, "comment": self.comment, "created_at": self.created_at}


@dataclass(frozen=True, slots=True)
class Message:
    id: str
    conversation_id: str
    role: str
    text: str
    status: str
    finish_reason: str | None
    model: str | None
    usage: str | None
    reply_to: str | None
    stream_id: str | None
    created_at: float
    finished_at: float | None
    first_token_ms: float | None
    feedback: Feedback | None = None
    attachments: tuple[Attachment, ...] = ()
    reasoning: str | None = None  # the model's reasoning, kept apart from the text
    assistant: str | None = None  # who answered (an answer's; a question has none)
    parent_id: str | None = None  # the message it follows: see ``schema.messages``
    sources: str | None = None  # JSON: which upstream wrote which part (``Ending.sources``)

    def public(self, *, show_reasoning: bool = True) -> dict[str, Any]:
        """The message as clients read it; ``reasoning`` is null unless ``show_reasoning``
        (its assistant's ``reasoning = "show"``): stored either way, shown only so."""
        return {
            "id": self.id,
            "conversation_id": self.conversation_id,
            "role": self.role,
            "text": self.text,
            "reasoning": self.reasoning if show_reasoning else None,
            "status": self.status,
            "finish_reason": self.finish_reason,
            "model": self.model,
            "assistant": self.assistant,
            "usage": json.loads(self.usage) if self.usage else None,
            "reply_to": self.reply_to,
            "parent_id": self.parent_id,
            "stream_id": self.stream_id,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
            "first_token_ms": self.first_token_ms,
            "feedback": self.feedback.public() if self.feedback else None,
            "attachments": [a.public() for a in self.attachments],
            "sources": json.loads(self.sources) if self.sources else [],
        }


@dataclass(frozen=True, slots=True)
class Turn:
    """A question recorded and its answer opened: what the model gets to see."""

    conversation_id: str
    question_id: str
    answer_id: str
    history: tuple[ChatMessage, ...]
