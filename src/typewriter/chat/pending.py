"""An answer whose question is still being committed (``store.group_commit``).

The ask returned before its question was written, so the answer's saving waits for
that commit: its final save (and so its ``end``) never comes before it. If the
commit failed, nothing of the turn is stored; the answer is stopped at once and
its final save raises ``StoreUnavailable``, which the generation turns into an
``error`` the user sees, rather than an answer that looks kept and is not.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from typing import Any

from typewriter.errors import StoreUnavailable
from typewriter.recorder import Checkpointer, Recorder

__all__ = ["PendingRecorder"]


class PendingRecorder(Recorder):
    """A recorder that saves nothing before its turn's commit, and nothing if it failed."""

    def __init__(
        self, checkpointer: Checkpointer, message_id: str, committed: asyncio.Future[None]
    ) -> None:
        super().__init__(checkpointer, message_id)
        self.committed = committed
        self._watch: asyncio.Task[None] | None = None

    def start(self, parts: list[str], reasoning: list[str] | None = None) -> None:
        super().start(parts, reasoning)
        self._watch = asyncio.create_task(self._stop_if_lost())

    async def _stop_if_lost(self) -> None:
        """A failed commit ends the answer now (as a deleted row does): no text is
        generated into rows that do not exist."""
        with contextlib.suppress(StoreUnavailable):
            await self.committed
            return
        self.checkpointer.forget(self.message_id)
        if self._gone is not None:
            self._gone.set()

    async def finish(
        self,
        text: str,
        finish_reason: str,
        usage: dict[str, int] | None,
        first_token_ms: float | None,
        status: str = "done",
        reasoning: str = "",
        sources: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        """Wait for the question's commit, then save the end; ``StoreUnavailable`` if
        the commit failed (nothing of the turn is stored)."""
        try:
            await asyncio.shield(self.committed)
        except StoreUnavailable:
            self.checkpointer.forget(self.message_id)
            raise
        finally:
            if self._watch is not None:
                self._watch.cancel()
        await super().finish(text, finish_reason, usage, first_token_ms, status, reasoning, sources)
