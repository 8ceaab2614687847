"""How many answers each user has generating at once, and the refusal of one too many."""

from __future__ import annotations

from typewriter.errors import TooManyRequests

__all__ = ["Slot", "Slots"]

# Seconds a client refused for too many answers at once is told to wait. When one of
# its answers ends cannot be known; a short wait lets a page retry soon after the
# user stops one, without turning the retries into a busy loop.
STREAMS_RETRY_AFTER = 2.0


class Slots:
    """Answers generating per owner, in this process; ``take`` refuses the one too many.

    Only owners with an answer generating have an entry, so memory follows the
    number of running answers, not the number of users ever seen.
    """

    __slots__ = ("_limit", "_held")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._held: dict[str, int] = {}

    def held(self, owner: str) -> int:
        return self._held.get(owner, 0)

    def take(self, owner: str) -> Slot:
        held = self._held.get(owner, 0)
        if held >= self._limit:
            raise TooManyRequests(
                f"{held} answers are already generating for you, the most allowed at once "
                f"(max_streams_per_user = {self._limit}); wait for one to end or stop one "
                "with POST /v1/streams/{stream_id}/cancel",
                code="too_many_streams",
                retry_after=STREAMS_RETRY_AFTER,
            )
        # Counted at once, before any await: concurrent asks cannot all pass the check.
        self._held[owner] = held + 1
        return Slot(self, owner)

    def give_back(self, owner: str) -> None:
        held = self._held.get(owner, 0) - 1
        if held > 0:
            self._held[owner] = held
        else:
            self._held.pop(owner, None)


class Slot:
    """One owner's place among its generating answers; ``release`` is idempotent
    because the generation frees it early (before ``end``) and its task's done
    callback frees it again as a safety net."""

    __slots__ = ("_slots", "_owner", "_held")

    def __init__(self, slots: Slots, owner: str) -> None:
        self._slots = slots
        self._owner = owner
        self._held = True

    @property
    def owner(self) -> str:
        return self._owner

    def release(self) -> None:
        if self._held:
            self._held = False
            self._slots.give_back(self._owner)
