"""The chat message: what a conversation is made of, owned by neither a model nor the store.

Model backends read messages (the history they answer), the store keeps them,
and the API builds them from requests. Defined here so that none of those
layers has to import another to speak of a message.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ChatMessage"]


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One turn: ``role`` is ``system``, ``user`` or ``assistant``; ``content`` its text."""

    role: str
    content: str
