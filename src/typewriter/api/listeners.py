"""How many event listeners one user holds open, and which one a new one replaces.

Following a stream or the channel is never refused (EventSource gives up for good
on a refused reconnect), so the cap cannot answer 429: at the cap a new listener
replaces one of the same user's, and the replaced response ends cleanly, the way a
server shutdown ends it. The first choice is an older listener of the same stream
(or of the channel): a client that reconnects before its old connection is seen
gone leaves such a stale half behind. Otherwise the oldest goes.

Only follow-only listeners are counted. A direct answer's response is already
bounded by ``max_streams_per_user``, and replacing it would stop its answer.

Counted per process: the cap bounds this process's open connections (the rate
and the running answers, with the Redis broker, are counted for all replicas).
The user is the limits' key (``limit_key``): with auth off, the client's address,
so that one client at its cap replaces its own listeners, never another client's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = ["CHANNEL_TOPIC", "Listener", "ListenerCap", "Replaceable", "stream_topic"]

CHANNEL_TOPIC = "channel"


def stream_topic(stream_id: str) -> str:
    """The topic of a listener of one stream; never equal to :data:`CHANNEL_TOPIC`."""
    return f"stream:{stream_id}"


@dataclass(frozen=True, slots=True)
class Listener:
    """Who listens to what, and the cap in force when the response opened."""

    user: str
    topic: str
    cap: int


class Replaceable(Protocol):
    """An open response that can be asked to end cleanly."""

    def replace(self) -> None: ...


class ListenerCap:
    """Each user's open listeners, oldest first, trimmed to the cap as new ones arrive."""

    def __init__(self) -> None:
        # dicts keep insertion order: the first item is the user's oldest listener
        self._held: dict[str, dict[Replaceable, str]] = {}

    def held_by(self, user: str) -> int:
        return len(self._held.get(user, ()))

    def admit(self, listener: Listener, response: Replaceable) -> None:
        """Register ``response``; first end as many of the user's older ones as the cap needs."""
        held = self._held.setdefault(listener.user, {})
        while held and len(held) >= listener.cap:
            replaced = _oldest(held, listener.topic)
            del held[replaced]
            replaced.replace()
        held[response] = listener.topic

    def release(self, listener: Listener, response: Replaceable) -> None:
        held = self._held.get(listener.user)
        if held is None:
            return
        held.pop(response, None)
        if not held:
            del self._held[listener.user]


def _oldest(held: dict[Replaceable, str], topic: str) -> Replaceable:
    """The oldest listener of ``topic`` if there is one, else the oldest of all."""
    for response, held_topic in held.items():
        if held_topic == topic:
            return response
    return next(iter(held))
