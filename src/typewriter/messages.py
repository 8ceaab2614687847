"""The chat message: what a conversation is made of, owned by neither a model nor the store.

Model backends read messages (the history they answer), the store keeps them,
and the API builds them from requests. Defined here so that none of those
layers has to import another to speak of a message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["ChatMessage", "ContentPart", "wire_content"]


@dataclass(frozen=True, slots=True)
class ContentPart:
    """One part of a message that holds more than text: ``text`` or ``image_url``.

    ``url`` is an image's ``http(s)`` URL or ``data:`` URI, ``detail`` OpenAI's optional
    resolution hint, kept only to be passed on as given.
    """

    type: str
    text: str = ""
    url: str = ""
    detail: str | None = None

    def wire(self) -> dict[str, Any]:
        """The part as Chat Completions writes it."""
        if self.type == "text":
            return {"type": "text", "text": self.text}
        image: dict[str, Any] = {"url": self.url}
        if self.detail is not None:
            image["detail"] = self.detail
        return {"type": "image_url", "image_url": image}


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One turn: ``role`` is ``system``, ``user`` or ``assistant``; ``content`` its text.

    ``parts`` is empty for a message of text only; a message with images has them all,
    text and images in their order, while ``content`` stays its text (what the limits
    and the token estimate count).
    """

    role: str
    content: str
    parts: tuple[ContentPart, ...] = ()

    @property
    def images(self) -> tuple[ContentPart, ...]:
        return tuple(p for p in self.parts if p.type == "image_url")


def wire_content(message: ChatMessage) -> str | list[dict[str, Any]]:
    """``content`` as an upstream gets it: the text, or the list of parts in their order."""
    if not message.parts:
        return message.content
    return [part.wire() for part in message.parts]
