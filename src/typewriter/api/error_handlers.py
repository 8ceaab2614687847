"""Every error leaves as ``{"error": {"code", "message"}}``; none leaves with a stack trace.

:func:`error_reply` is the one place where an exception becomes a status, a body
and headers. The app's exception handlers send that reply as it is; the routes of
OpenAI's API reshape it on their way out (``openai_errors.OpenAIRoute``), so no
handler knows about two shapes and none looks at the URL to choose. Being the one
place, it is also where refusals are counted for the metrics (by the contract's
status and code; the 431 of ``header_limit`` is counted there, before any route).

A client that left mid-request (Starlette's ``ClientDisconnect``, mostly while
its body is read) is no error of ours: nothing is sent, nothing is counted, and
the access log's line with status 0 is all that shows of it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from typewriter.errors import InvalidField, TypewriterError

from .body import field_errors

__all__ = ["ErrorReply", "error_reply", "install_error_handlers"]

log = logging.getLogger(__name__)

_CLIENT_LEFT = 0  # the status of a reply nobody is there to read: none is sent

_HTTP_CODES = {
    400: "bad_request",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """An error as it leaves: the status, ``{"error": {...}}``, and the headers it needs."""

    status: int
    body: dict[str, Any]
    headers: Mapping[str, str] | None = None

    def response(self) -> Response:
        if self.status == _CLIENT_LEFT:
            return _Unsent()
        return JSONResponse(self.body, status_code=self.status, headers=self.headers)


class _Unsent(Response):
    """No response at all, for a client that has gone: writing to it would only fail."""

    def __init__(self) -> None:
        self.background = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        return None


def error_reply(request: Request, exc: Exception) -> ErrorReply:
    """The contract's answer to any exception; anything unplanned is a bare 500, logged."""
    reply = _reply(request, exc)
    gateway = getattr(request.app.state, "gateway", None)
    if gateway is not None and reply.status != _CLIENT_LEFT:
        gateway.metrics.refused(reply.status, reply.body["error"]["code"])
    return reply


def _reply(request: Request, exc: Exception) -> ErrorReply:
    if isinstance(exc, ClientDisconnect):
        log.debug("client left during %s %s", request.method, request.url.path)
        return ErrorReply(_CLIENT_LEFT, {"error": {"code": "client_left", "message": "gone"}})
    if isinstance(exc, TypewriterError):
        return ErrorReply(exc.status, exc.to_dict(), exc.headers)
    if isinstance(exc, RequestValidationError):
        invalid = InvalidField.of(field_errors(exc.errors()))
        return ErrorReply(invalid.status, invalid.to_dict())
    if isinstance(exc, HTTPException):
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        if exc.status_code == 404:
            message = f"no such path: {request.method} {request.url.path}"
        body = {"error": {"code": code, "message": message}}
        return ErrorReply(exc.status_code, body, exc.headers)
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return ErrorReply(
        500, {"error": {"code": "internal_error", "message": "internal server error"}}
    )


async def _send(request: Request, exc: Exception) -> Response:
    return error_reply(request, exc).response()


def install_error_handlers(app: FastAPI) -> None:
    # ClientDisconnect has its own entry so that Starlette handles it like the planned
    # errors: the handler of ``Exception`` runs in its outermost middleware, which
    # re-raises to the server after replying (a second traceback in the log).
    planned = (TypewriterError, HTTPException, RequestValidationError, ClientDisconnect)
    for kind in (*planned, Exception):
        app.add_exception_handler(kind, _send)
