"""Refuse requests whose headers are too large, before any route runs.

The HTTP parser (httptools under uvicorn) sets no limit of its own: a 1 MiB
header or 10,000 header lines reach the app. Nothing legitimate needs more
than a few KiB (a key is 46 characters, a ticket about 100), so beyond
``max_header_bytes`` the answer is ``431`` in the contract's error shape, or in
OpenAI's on OpenAI's paths: no route has been chosen yet, so here the path decides.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from .error_handlers import ErrorReply
from .openai_errors import openai_reply

__all__ = ["HeaderLimit"]

MAX_HEADER_LINES = 100


def _openai_path(path: str) -> bool:
    """The paths of ``routes_openai``, whose clients read only OpenAI's error shape."""
    return path == "/v1/chat/completions" or path == "/v1/models" or path.startswith("/v1/models/")


class HeaderLimit:
    def __init__(self, app: ASGIApp, max_header_bytes: int) -> None:
        self.app = app
        self.max_header_bytes = max_header_bytes

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
                if _openai_path(scope["path"]):
                    reply = openai_reply(reply)
                await reply.response()(scope, receive, send)
                return
        await self.app(scope, receive, send)
