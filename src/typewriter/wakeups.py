"""Many coarse deadlines on one event loop timer: wake-ups grouped into slots.

Ten thousand listeners each waiting for its heartbeat would each hold a loop
timer of their own (``call_at``: a ``TimerHandle`` and, on uvloop, a libuv
timer, about 0.5 KiB). Here a deadline is rounded up to its slot
(``resolution`` seconds) and everything due in one slot shares one timer: one
timer per busy slot, whatever the number of waiters, and the waiter itself is a
bound method in a list.

(A thousand simulated streams pacing their tokens this way, instead of one
``asyncio.sleep`` each, saved about 1% of the CPU on uvloop: not done.)

Rounding up means a wake-up comes at most ``resolution`` late, never early.
A waiter that changed its mind is not removed: its callback checks whether it
is still wanted (cheaper than finding it in its slot).
"""

from __future__ import annotations

import asyncio
import heapq
import math
import weakref
from collections.abc import Callable

__all__ = ["Wakeups", "wakeups"]

Waiter = Callable[[], None]


class Wakeups:
    """Slots of waiters on one loop; one ``call_at`` armed for the earliest slot."""

    __slots__ = ("resolution", "_slots", "_order", "_handle", "_armed_slot")

    def __init__(self, resolution: float) -> None:
        # No reference to the loop: the registry below holds one Wakeups per live loop.
        self.resolution = resolution
        self._slots: dict[int, list[Waiter]] = {}
        self._order: list[int] = []  # a heap of the slots in _slots
        self._handle: asyncio.TimerHandle | None = None
        self._armed_slot = 0

    def call_at(self, deadline: float, callback: Callable[[], None]) -> None:
        """Run ``callback`` once, at ``deadline`` or up to one slot later."""
        self._add(deadline, callback)

    def _add(self, deadline: float, waiter: Waiter) -> None:
        slot = math.ceil(deadline / self.resolution)
        waiters = self._slots.get(slot)
        if waiters is None:
            self._slots[slot] = [waiter]
            heapq.heappush(self._order, slot)
            if self._handle is None or slot < self._armed_slot:
                self._arm(slot)
        else:
            waiters.append(waiter)

    def _arm(self, slot: int) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._armed_slot = slot
        self._handle = asyncio.get_running_loop().call_at(slot * self.resolution, self._fire)

    def _fire(self) -> None:
        self._handle = None
        now = asyncio.get_running_loop().time()
        order, slots = self._order, self._slots
        while order and order[0] * self.resolution <= now:
            for waiter in slots.pop(heapq.heappop(order)):
                waiter()
        if order:
            self._arm(order[0])


_BY_LOOP: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[float, Wakeups]] = (
    weakref.WeakKeyDictionary()
)


def wakeups(resolution: float) -> Wakeups:
    """The running loop's :class:`Wakeups` of this resolution (made on first use)."""
    loop = asyncio.get_running_loop()
    of_loop = _BY_LOOP.get(loop)
    if of_loop is None:
        of_loop = _BY_LOOP[loop] = {}
    found = of_loop.get(resolution)
    if found is None:
        found = of_loop[resolution] = Wakeups(resolution)
    return found
