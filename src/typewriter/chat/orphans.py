"""Answers whose replica died: store what its listeners saw, then end them ``interrupted``."""

from __future__ import annotations

import logging

from typewriter import events
from typewriter.errors import TypewriterError
from typewriter.store.sql import SqlStore
from typewriter.streams.base import Orphan, Replicas

from .generation import Answer, Generation, Outcome

__all__ = ["end_orphans"]

log = logging.getLogger(__name__)


async def end_orphans(replicas: Replicas, store: SqlStore | None, generation: Generation) -> int:
    """End the streams of replicas that died: store what was shown, then ``end``.

    Called periodically on every replica of a shared broker; each orphan is
    claimed by exactly one of them.
    """
    orphans = await replicas.claim_orphans()
    for orphan in orphans:
        await _end_orphan(orphan, store, generation)
    return len(orphans)


async def _end_orphan(orphan: Orphan, store: SqlStore | None, generation: Generation) -> None:
    start: events.Start | None = None
    parts: list[str] = []
    reasoning: list[str] = []
    stored = (events.Start.name, events.Delta.name, events.Reasoning.name)
    for _, name, data, _ in orphan.entries:
        if name not in stored:
            continue  # only the ids, the text and the reasoning are stored
        try:
            event = events.decode(name, data)
        except events.EventDecodeError as exc:  # ending the stream matters more than one event
            log.warning(
                "stream %s: an unreadable %s event was left out: %s", orphan.stream_id, name, exc
            )
            continue
        if isinstance(event, events.Start):
            start = event
        elif isinstance(event, events.Delta):
            parts.append(event.text)
        elif isinstance(event, events.Reasoning):
            reasoning.append(event.text)
    message_id = start.message_id if start is not None else ""
    if store is not None and message_id:
        try:
            await store.interrupt([message_id], "".join(parts), "".join(reasoning))
        except TypewriterError as exc:  # the next start-up marks it from its checkpoint
            log.warning("could not store interrupted answer %s: %s", message_id, exc.message)
    conversation_id = start.conversation_id if start is not None else ""
    answer = Answer(orphan.stream_id, conversation_id, message_id)
    lost = TypewriterError(
        "the server generating this answer stopped; the answer ends here",
        code="interrupted",
    )
    await generation.finish(answer, Outcome("error", error=lost))
