"""The model's own share of the time to first token, without the backends knowing metrics.

A generation opens a :class:`ModelTiming` in its pump's context before it asks
the model for anything; that moment is when the model's clock starts unless the
backend says otherwise. A backend that sends a request upstream calls
:func:`upstream_request_sent` as it sends it (on every attempt: the last one,
the one that answered, counts), so connecting, retries and failover count as
the gateway's share, and the answer's log line can name the upstream. The
async generator of a backend runs in its consumer's context, so no argument
has to be threaded through.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from dataclasses import dataclass, field

__all__ = ["ModelTiming", "track", "upstream_request_sent"]


@dataclass(slots=True)
class ModelTiming:
    """``sent_at`` is ``time.monotonic()`` when the model's request went out."""

    sent_at: float = field(default_factory=time.monotonic)
    upstream: str | None = None


_current: ContextVar[ModelTiming | None] = ContextVar("typewriter_model_timing", default=None)


def track() -> ModelTiming:
    """A timing for the model about to be asked, in the current context (a pump task's)."""
    timing = ModelTiming()
    _current.set(timing)
    return timing


def upstream_request_sent(upstream: str) -> None:
    """A backend sends its request to ``upstream`` now; outside a generation, nothing."""
    timing = _current.get()
    if timing is not None:
        timing.sent_at = time.monotonic()
        timing.upstream = upstream
