"""What the sync and async transports share about httpx: timeouts and failure reasons."""

from __future__ import annotations

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
    """A short reason for a failed connection: ``connection refused``, ``timed out``."""
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    text = str(exc) or type(exc).__name__
    # httpx wraps the OSError's text, e.g. "[Errno 111] Connection refused"; "All
    # connection attempts failed" (anyio) says less than its cause.
    cause = exc.__cause__ or exc.__context__
    while isinstance(cause, Exception) and not isinstance(cause, OSError):
        cause = cause.__cause__ or cause.__context__
    if isinstance(cause, OSError) and cause.strerror:
        text = cause.strerror
    text = _ERRNO.sub("", text.strip().splitlines()[0] if text.strip() else text)
    return text[:1].lower() + text[1:] if text else "connection failed"
