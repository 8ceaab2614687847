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
    """One turn: ``role`` is ``system``, ``user``, ``assistant`` or ``tool``; ``content``
    its text.

    ``parts`` is empty for a message of text only; a message with images has them all,
    text and images in their order, while ``content`` stays its text (what the limits
    and the token estimate count).

    Only ``/v1/chat/completions`` makes the tool parts: an assistant turn's
    ``tool_calls`` (``{"id", "type": "function", "function": {"name",
    "arguments"}}`` each, as OpenAI writes them) and a ``tool`` turn's
    ``tool_call_id``, the call it answers. The store keeps neither, so a
    conversation of ``/v1/chat`` never carries them. ``name`` is the optional
    participant name OpenAI's messages may have.
    """

    role: str
    content: str
    parts: tuple[ContentPart, ...] = ()
    tool_calls: tuple[dict[str, Any], ...] = ()
    tool_call_id: str | None = None
    name: str | None = None

    @property
    def images(self) -> tuple[ContentPart, ...]:
        return tuple(p for p in self.parts if p.type == "image_url")

    @property
    def read_text(self) -> str:
        """What the model reads of it, for ``max_message_chars`` and the token estimate:
        the text and its calls' arguments (ids and names are short, and bounded by the
        request body's size)."""
        return self.content + "".join(call["function"]["arguments"] for call in self.tool_calls)


def wire_content(message: ChatMessage) -> str | list[dict[str, Any]]:
    """``content`` as an upstream gets it: the text, or the list of parts in their order."""
    if not message.parts:
        return message.content
    return [part.wire() for part in message.parts]
