"""The timeouts of one generation, at the cost of a float write per token."""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["Watchdog"]


class Watchdog:
    """Cancels a task once ``idle`` seconds pass without progress (``first`` for the first
    chunk) or ``total`` seconds pass at all.

    :meth:`progress` on each chunk stores the time: a float write per token. The
    timer is re-armed only when it fires early (and once, at the first token, when
    the deadline switches from ``first`` to ``idle``), so a stream costs one timer
    per idle period rather than one per token.
    """

    __slots__ = (
        "_loop",
        "_task",
        "_first",
        "_idle",
        "_end",
        "_handle",
        "_started",
        "last",
        "fired",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        task: asyncio.Task[Any],
        *,
        first: float,
        idle: float,
        total: float,
    ) -> None:
        self._loop = loop
        self._task = task
        self._first = first
        self._idle = idle
        self._end = loop.time() + total
        self.fired = False
        self._handle = loop.call_at(self._arm(), self._check)

    def _arm(self) -> float:
        """Wait for a first chunk from now: its deadline."""
        self.last = self._loop.time() + self._first - self._idle  # the deadline is now + first
        self._started = False
        return self._due()

    @property
    def total_spent(self) -> bool:
        """Whether the whole answer's time is up (not only a wait for the next chunk)."""
        return self._loop.time() >= self._end

    def restart(self) -> None:
        """After it fired or a source failed: wait for a new source's first chunk, within what
        is left of the total."""
        self._handle.cancel()
        self.fired = False
        self._handle = self._loop.call_at(self._arm(), self._check)

    def _due(self) -> float:
        return min(self.last + self._idle, self._end)

    def progress(self) -> None:
        self.last = self._loop.time()
        if not self._started:
            self._started = True
            self._handle.cancel()
            self._handle = self._loop.call_at(self._due(), self._check)

    def _check(self) -> None:
        due = self._due()
        if self._loop.time() < due:
            self._handle = self._loop.call_at(due, self._check)
            return
        self.fired = True
        self._task.cancel()

    def stop(self) -> None:
        self._handle.cancel()
