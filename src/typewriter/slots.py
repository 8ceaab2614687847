"""How many answers each key has generating at once, and the refusal of one too many.

The key is whom ``max_streams_per_user`` counts (``api.limit_key``): the user, or
with auth off the client's address; ``None`` counts nobody (a client exempt from
the limits). :class:`Slots` counts in this process; with the Redis broker the
count is shared by every replica (``streams.redis.limits``), behind the same
:class:`StreamSlots` interface.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from typewriter.errors import TooManyRequests

__all__ = ["STREAMS_RETRY_AFTER", "Slot", "Slots", "StreamSlots", "too_many_streams"]

# Seconds a client refused for too many answers at once is told to wait. When one of
# its answers ends cannot be known; a short wait lets a page retry soon after the
# user stops one, without turning the retries into a busy loop.
STREAMS_RETRY_AFTER = 2.0


class StreamSlots(Protocol):
    """Where the answers generating per key are counted."""

    async def take(self, owner: str, key: str | None, stream_id: str) -> Slot:
        """A slot for the answer ``stream_id`` of ``owner``, counted under ``key``;
        ``TooManyRequests`` when ``key`` already holds ``max_streams_per_user``."""
        ...

    def held(self, key: str) -> int:
        """Slots of ``key`` this process holds."""
        ...


def too_many_streams(held: int, limit: int) -> TooManyRequests:
    return TooManyRequests(
        f"{held} answers are already generating for you, the most allowed at once "
        f"(max_streams_per_user = {limit}); wait for one to end or stop one "
        "with POST /v1/streams/{stream_id}/cancel",
        code="too_many_streams",
        retry_after=STREAMS_RETRY_AFTER,
    )


class Slots:
    """Answers generating per key, in this process; ``take`` refuses the one too many.

    Only keys with an answer generating have an entry, so memory follows the
    number of running answers, not the number of clients ever seen.
    """

    __slots__ = ("_limit", "_held")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._held: dict[str, int] = {}

    def held(self, key: str) -> int:
        return self._held.get(key, 0)

    async def take(self, owner: str, key: str | None, stream_id: str) -> Slot:
        # No await in here: concurrent asks cannot all pass the check.
        if key is None:
            return Slot(owner)
        held = self._held.get(key, 0)
        if held >= self._limit:
            raise too_many_streams(held, self._limit)
        self._held[key] = held + 1
        return Slot(owner, lambda: self._give_back(key))

    def _give_back(self, key: str) -> None:
        held = self._held.get(key, 0) - 1
        if held > 0:
            self._held[key] = held
        else:
            self._held.pop(key, None)


class Slot:
    """One answer's place among its key's generating answers; ``release`` is idempotent
    because the generation frees it early (before ``end``) and its task's done
    callback frees it again as a safety net."""

    __slots__ = ("_owner", "_give_back")

    def __init__(self, owner: str, give_back: Callable[[], None] | None = None) -> None:
        self._owner = owner
        self._give_back = give_back

    @property
    def owner(self) -> str:
        """The answer's user (the answer log names them), whatever the slot's key."""
        return self._owner

    def release(self) -> None:
        give_back, self._give_back = self._give_back, None
        if give_back is not None:
            give_back()
