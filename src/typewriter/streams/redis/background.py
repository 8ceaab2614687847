"""The broker's background tasks and the one flag that stops them all.

Loops stop on the flag rather than by cancellation (redis-py can swallow a
cancel that lands inside a command: see :mod:`.connection`); cancelling is only
the backstop of :meth:`Background.stop`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any

__all__ = ["Background"]


class Background:
    """Tasks of one broker: every loop checks ``closing``; ``stop`` waits for them."""

    __slots__ = ("closing", "_tasks")

    def __init__(self) -> None:
        self.closing = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def pause(self, seconds: float) -> None:
        """Sleep, but wake at once when the broker closes."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self.closing.wait()

    async def stop(self, patience: float) -> None:
        """Wait up to ``patience`` seconds for the tasks to see the flag, then cancel the rest.

        ``closing`` must be set first (and anything a task waits on woken).
        """
        tasks = set(self._tasks)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=patience)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)
