"""The chat message: what a conversation is made of, owned by neither a model nor the store.

Model backends read messages (the history they answer), the store keeps them,
and the API builds them from requests. Defined here so that none of those
layers has to import another to speak of a message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["ChatMessage"]


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One turn: ``role`` is ``system``, ``user``, ``assistant`` or ``tool``; ``content``
    its text.

    Only ``/v1/chat/completions`` makes the tool parts: an assistant turn's
    ``tool_calls`` (``{"id", "type": "function", "function": {"name",
    "arguments"}}`` each, as OpenAI writes them) and a ``tool`` turn's
    ``tool_call_id``, the call it answers. The store keeps neither, so a
    conversation of ``/v1/chat`` never carries them. ``name`` is the optional
    participant name OpenAI's messages may have.
    """

    role: str
    content: str
    tool_calls: tuple[dict[str, Any], ...] = ()
    tool_call_id: str | None = None
    name: str | None = None

    @property
    def read_text(self) -> str:
        """What the model reads of it, for ``max_message_chars`` and the token estimate:
        the text and its calls' arguments (ids and names are short, and bounded by the
        request body's size)."""
        return self.content + "".join(call["function"]["arguments"] for call in self.tool_calls)
