"""What the client's calls return: small frozen records, built from the server's JSON once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from typewriter.events import AnswerEvent

__all__ = ["Asked", "Assistants", "StreamEvent"]


@dataclass(frozen=True, slots=True)
class Asked:
    """A detached ask's ``202``: the stream to follow and the ids of what was stored.

    ``conversation_id``, ``message_id`` (the answer's) and ``question_id`` are None on a
    server that keeps no conversations.
    """

    stream_id: str
    conversation_id: str | None
    message_id: str | None
    question_id: str | None
    events_url: str

    @classmethod
    def of(cls, body: dict[str, Any]) -> Asked:
        return cls(
            str(body["stream_id"]),
            _optional(body.get("conversation_id")),
            _optional(body.get("message_id")),
            _optional(body.get("question_id")),
            str(body["events_url"]),
        )


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One event of an answer: its ``id`` in the stream (the resume point) and its typed
    record (``typewriter.events``: Start, Reasoning, Delta, ToolCall, Error, End)."""

    id: int
    event: AnswerEvent

    @property
    def name(self) -> str:
        """``start``, ``delta``, ... : the event's name on the wire."""
        return self.event.name


@dataclass(frozen=True, slots=True)
class Assistants:
    """``GET /v1/assistants``: the served assistants, and the one that answers by default."""

    data: list[dict[str, Any]]
    default: str | None

    @property
    def names(self) -> list[str]:
        return [str(a["name"]) for a in self.data if "name" in a]


def _optional(value: Any) -> str | None:
    return None if value is None else str(value)
