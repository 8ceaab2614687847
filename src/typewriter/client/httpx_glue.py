"""What the sync and async transports share about httpx: timeouts and failure reasons."""

from __future__ import annotations

import os
import re

import httpx

__all__ = ["follow_timeout", "reason", "timeout"]

_ERRNO = re.compile(r"^\[Errno -?\d+\]\s*")


def timeout(seconds: float) -> httpx.Timeout:
    return httpx.Timeout(seconds)


def follow_timeout(seconds: float) -> httpx.Timeout:
    """A followed stream's: ``seconds`` to connect, and between two chunks. The server
    writes a ``: ping`` every 15 s while the answer is silent, so a longer gap is a
    connection that died without saying so, which is resumed like a cut one."""
    return httpx.Timeout(seconds, read=max(seconds, 20.0))


def reason(exc: httpx.TransportError) -> str:
    """A short reason for a failed connection: ``connection refused``, ``timed out``.

    The deepest OSError with an errno says it best, and the same for both clients:
    httpx's own text differs by backend (asyncio's is "All connection attempts failed").
    """
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    text = str(exc).strip()
    cause: BaseException | None = exc
    for _ in range(16):  # a chain is short; a cycle must not hang us
        if cause is None:
            break
        if isinstance(cause, OSError) and cause.errno:
            # a resolver's errors are negative and have only their own text
            text = os.strerror(cause.errno) if cause.errno > 0 else str(cause.strerror)
        cause = cause.__cause__ or cause.__context__
    text = _ERRNO.sub("", text.splitlines()[0] if text else "") or type(exc).__name__
    return text[:1].lower() + text[1:]
