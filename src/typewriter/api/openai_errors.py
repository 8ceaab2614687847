"""OpenAI's error shape, given by the routes of OpenAI's API.

OpenAI's SDK reads ``{"error": {"message", "type", "param", "code"}}`` to pick
the exception it raises (``AuthenticationError``, ``RateLimitError``, …), so
every error of those routes leaves in that shape: the handler's, its
dependencies' (401 from auth, 429 from the rate limit) and the 405 a route
answers before its handler runs. :class:`OpenAIRoute` does it, as the route
class of their router, so the shape follows the route rather than a URL pattern.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from .error_handlers import ErrorReply, error_reply

__all__ = ["OPENAI_TAG", "OpenAIRoute", "openai_error", "openai_reply"]

OPENAI_TAG = "openai"  # every OpenAIRoute has it: the OpenAPI document shows its errors so
_INDEX = re.compile(r"\.(\d+)(?=\.|$)")


def _error_type(status: int) -> str:
    if status == 401:
        return "authentication_error"
    if status == 403:
        return "permission_error"
    if status == 429:
        return "rate_limit_error"
    if status >= 500:
        return "server_error"
    return "invalid_request_error"


def openai_error(status: int, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """A contract error body ``{"error": {"code", "message", ...}}`` in OpenAI's shape.

    Invalid fields (``422`` in the contract) become ``400``, which is what
    OpenAI answers and what its SDK maps to ``BadRequestError``. ``param`` is
    the ``param`` detail if given, else the first invalid field, written as
    OpenAI writes it (``messages[0].content``).
    """
    error = body["error"]
    param = error.get("param")
    fields = error.get("fields")
    if param is None and fields:
        param = _INDEX.sub(r"[\1]", str(fields[0]["field"]))
    if status == 422:
        status = 400
    shaped = {
        "message": error["message"],
        "type": _error_type(status),
        "param": param,
        "code": error["code"],
    }
    return status, {"error": shaped}


def openai_reply(reply: ErrorReply) -> ErrorReply:
    status, body = openai_error(reply.status, reply.body)
    return ErrorReply(status, body, reply.headers)


class OpenAIRoute(APIRoute):
    """A route whose every error leaves in OpenAI's shape (FastAPI's ``route_class``)."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        if OPENAI_TAG not in self.tags:
            self.tags = [*self.tags, OPENAI_TAG]

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def shaped(request: Request) -> Response:
            try:  # the dependencies run in here too: auth, the rate limit
                response = await handler(request)
            except Exception as exc:
                return _openai_response(request, exc)
            return _ShapedResponse(response, request)

        return shaped

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().handle(scope, receive, send)
        except HTTPException as exc:  # 405: refused before the handler runs
            await _openai_response(Request(scope, receive), exc)(scope, receive, send)


def _openai_response(request: Request, exc: Exception) -> Response:
    return openai_reply(error_reply(request, exc)).response()


class _ShapedResponse(Response):
    """The handler's response, whose own errors are shaped too while nothing was sent yet:
    a completion reads its answer after the handler returned."""

    def __init__(self, inner: Response, request: Request) -> None:
        self.inner = inner
        self.request = request
        self.background = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.inner(scope, receive, watched)
        except Exception as exc:
            if started:
                raise
            await _openai_response(self.request, exc)(scope, receive, send)
