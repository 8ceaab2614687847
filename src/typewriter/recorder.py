"""Saving one answer while it streams, so that nothing shown to a user is lost.

Every ``interval`` seconds the text so far is written (only if it grew), and
once more when the answer ends, whatever the reason. The token path never
waits for any of it: a slow database slows the checkpoints, not the tokens.
If the final save fails (the database is down), the answer stays
``streaming`` with its last checkpoint, and the next start-up marks it
``interrupted`` — the same as if the process had died.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from typewriter.errors import TypewriterError
from typewriter.store.sql import SqlStore

__all__ = ["Recorder"]

log = logging.getLogger(__name__)
FINAL_SAVE_TIMEOUT = 10.0


class Recorder:
    def __init__(self, store: SqlStore, message_id: str, interval: float) -> None:
        self.store = store
        self.message_id = message_id
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self, parts: list[str]) -> None:
        self._task = asyncio.create_task(self._checkpoints(parts))

    async def _checkpoints(self, parts: list[str]) -> None:
        saved = 0
        while True:
            await asyncio.sleep(self.interval)
            if len(parts) == saved:
                continue
            saved = len(parts)
            try:
                await self.store.checkpoint(self.message_id, "".join(parts))
            except TypewriterError as exc:
                log.warning("checkpoint of %s skipped: %s", self.message_id, exc.message)

    async def abandon(self) -> None:
        """Stop checkpointing without a final save (someone else stored the answer)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def finish(
        self,
        text: str,
        finish_reason: str,
        usage: dict[str, int] | None,
        first_token_ms: float | None,
        status: str = "done",
    ) -> None:
        await self.abandon()
        try:
            async with asyncio.timeout(FINAL_SAVE_TIMEOUT):
                await self.store.finish(
                    self.message_id, text, finish_reason, usage, first_token_ms, status
                )
        except (TypewriterError, TimeoutError):
            log.warning(
                "final save of %s failed; it will be marked interrupted at the next start",
                self.message_id,
            )
