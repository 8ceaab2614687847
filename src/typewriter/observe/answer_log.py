"""One log line per finished answer: what an operator greps for when a user complains."""

from __future__ import annotations

import logging

__all__ = ["log_answer"]

log = logging.getLogger("typewriter.answers")


def log_answer(
    *,
    stream_id: str,
    user: str,
    assistant: str,
    upstream: str,
    model: str,
    finish_reason: str,
    error_code: str | None,
    chars: int,
    tokens: int | None,
    first_token_ms: float | None,
    duration_ms: float,
) -> None:
    """``tokens`` is what the model reported (``None`` when it reported nothing)."""
    if not log.isEnabledFor(logging.INFO):
        return
    fields = {
        "stream_id": stream_id,
        "user": user,
        "assistant": assistant,
        "upstream": upstream,
        "model": model,
        "finish_reason": finish_reason,
        "error_code": error_code,
        "chars": chars,
        "tokens": tokens,
        "first_token_ms": None if first_token_ms is None else round(first_token_ms, 1),
        "duration_ms": round(duration_ms, 1),
    }
    text = " ".join(f"{k}={'-' if v is None else v}" for k, v in fields.items() if k != "stream_id")
    log.info("answer %s ended: %s", stream_id, text, extra=fields)
