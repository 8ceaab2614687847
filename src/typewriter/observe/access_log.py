"""One log line per request, when its response has ended (an event stream's too).

A pure ASGI middleware, so an event-stream response is neither buffered nor
wrapped in a task: it only watches ``http.response.start`` go by for the status
and logs once the app returns, with the whole duration. The line names the
caller's user id (set by the auth dependencies) and address (the client a
trusted proxy names, ``api.client_address``), and never a key or a ticket:
the ``Authorization`` header is not read, and query parameters that carry
credentials are dropped from the path.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable
from urllib.parse import parse_qsl, urlencode

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["AccessLog", "loggable_path"]

log = logging.getLogger("typewriter.access")

# Query parameters never logged: any name holding one of these words.
_SECRET_WORDS = ("ticket", "key", "token", "secret", "password", "auth")


def loggable_path(scope: Scope) -> str:
    """The request's path and query, without the query parameters that carry credentials."""
    path: str = scope.get("path", "")
    query = scope.get("query_string", b"").decode("latin-1")
    if not query:
        return path
    kept = [
        (name, value)
        for name, value in parse_qsl(query, keep_blank_values=True)
        if not any(word in name.lower() for word in _SECRET_WORDS)
    ]
    return f"{path}?{urlencode(kept)}" if kept else path


class AccessLog:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not log.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0

        def watched(message: Message) -> Awaitable[None]:
            # A plain function handing back send's awaitable: no extra coroutine per write
            # of an event stream.
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            return send(message)

        try:
            await self.app(scope, receive, watched)
        except BaseException:
            status = status or 500  # the server answers 500 for what escaped the app
            raise
        finally:
            _log(scope, status, time.perf_counter() - started)


def _log(scope: Scope, status: int, seconds: float) -> None:
    state = scope.get("state") or {}
    peer = scope.get("client")
    fields = {
        "method": scope.get("method", ""),
        "path": loggable_path(scope),
        "status": status,
        "duration_ms": round(seconds * 1000, 1),
        "user": state.get("user"),
        "client": str(peer[0]) if peer else None,
    }
    log.info(
        "%s %s %d %.1f ms user=%s client=%s",
        fields["method"],
        fields["path"],
        status,
        fields["duration_ms"],
        fields["user"] or "-",
        fields["client"] or "-",
        extra=fields,
    )
