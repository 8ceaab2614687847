"""Refuse requests whose headers are too large, before any route runs.

The HTTP parser (httptools under uvicorn) sets no limit of its own: a 1 MiB
header or 10,000 header lines reach the app. Nothing legitimate needs more
than a few KiB (a key is 46 characters, a ticket about 100), so beyond
``max_header_bytes`` the answer is ``431`` in the contract's error shape, or in
OpenAI's for a request an OpenAI route would take: no route has run yet, so the
routes' own path match decides.

Under ``typewriter serve`` the server refuses such heads itself while reading
them (``typewriter.http_limits``: the app only runs once the whole head is in,
too late to bound it), and renders its refusals with :class:`HeadRefusals`, so
they leave in the same shapes and are counted the same way. This middleware
stays for the app served by any other ASGI server.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Receive, Scope, Send

from typewriter.observe.metrics import Metrics

from .error_handlers import ErrorReply
from .openai_errors import openai_reply

__all__ = ["HeadRefusals", "HeaderLimit"]

MAX_HEADER_LINES = 100


class HeaderLimit:
    """``openai_routes`` are the OpenAI-compatible routes: a request one of them would take
    (by their own path match) is refused in OpenAI's shape."""

    def __init__(
        self,
        app: ASGIApp,
        max_header_bytes: int,
        openai_routes: Sequence[BaseRoute] = (),
        metrics: Metrics | None = None,
    ) -> None:
        self.app = app
        self.max_header_bytes = max_header_bytes
        self.openai_routes = openai_routes
        self.metrics = metrics

    def _for_openai(self, scope: Scope) -> bool:
        return any(route.matches(scope)[0] is not Match.NONE for route in self.openai_routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = scope["headers"]
            size = sum(len(name) + len(value) + 4 for name, value in headers)
            if size > self.max_header_bytes or len(headers) > MAX_HEADER_LINES:
                body = {
                    "error": {
                        "code": "headers_too_large",
                        "message": f"the request's headers are too large: at most "
                        f"{self.max_header_bytes} bytes and {MAX_HEADER_LINES} lines",
                    }
                }
                reply = ErrorReply(431, body)
                if self.metrics is not None:
                    self.metrics.refused(431, "headers_too_large")
                if self._for_openai(scope):
                    reply = openai_reply(reply)
                await reply.response()(scope, receive, send)
                return
        await self.app(scope, receive, send)


class HeadRefusals:
    """The body of a refusal sent by the server before the app runs (``408``, ``414``,
    ``431``, ``503``): the contract's shape, or OpenAI's where an OpenAI route would
    have taken the request; each is counted as the app counts its own refusals."""

    def __init__(
        self, openai_routes: Sequence[BaseRoute] = (), metrics: Metrics | None = None
    ) -> None:
        self.openai_routes = openai_routes
        self.metrics = metrics

    def __call__(
        self, status: int, code: str, message: str, method: str | None, path: str | None
    ) -> bytes:
        if self.metrics is not None:
            self.metrics.refused(status, code)
        reply = ErrorReply(status, {"error": {"code": code, "message": message}})
        if path is not None and self._for_openai(method or "GET", path):
            reply = openai_reply(reply)
        return json.dumps(reply.body, ensure_ascii=False, separators=(",", ":")).encode()

    def _for_openai(self, method: str, path: str) -> bool:
        scope: Scope = {"type": "http", "method": method, "path": path, "root_path": ""}
        return any(route.matches(scope)[0] is not Match.NONE for route in self.openai_routes)
