"""Every error leaves as ``{"error": {"code", "message"}}``; none leaves with a stack trace.

On the OpenAI-compatible paths the same error is reshaped into OpenAI's
``{"error": {"message", "type", "param", "code"}}`` (see ``openai_schemas``), in
one place, :func:`error_response`, so that no handler knows about two shapes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from typewriter.errors import TypewriterError

from .openai_schemas import is_openai_path, openai_error

__all__ = ["error_response", "install_error_handlers"]

log = logging.getLogger(__name__)

_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def error_response(
    path: str,
    body: dict[str, Any],
    status: int,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """The contract's error body, in OpenAI's shape where OpenAI's clients are talking."""
    if is_openai_path(path):
        status, body = openai_error(status, body)
    return JSONResponse(body, status_code=status, headers=headers)


async def _typewriter_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, TypewriterError)
    headers = getattr(exc, "headers", None)  # Retry-After, WWW-Authenticate
    return error_response(request.url.path, exc.to_dict(), exc.status, headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    if exc.status_code == 404:
        message = f"no such path: {request.method} {request.url.path}"
    body = {"error": {"code": code, "message": message}}
    return error_response(request.url.path, body, exc.status_code, exc.headers)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    fields = []
    for error in exc.errors():
        location = ".".join(str(part) for part in error.get("loc", ()))
        fields.append({"field": location, "message": str(error.get("msg", "invalid"))})
    summary = "; ".join(f"{f['field']}: {f['message']}" for f in fields[:5])
    body = {"error": {"code": "invalid_field", "message": summary, "fields": fields}}
    return error_response(request.url.path, body, 422)


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    body = {"error": {"code": "internal_error", "message": "internal server error"}}
    return error_response(request.url.path, body, 500)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(TypewriterError, _typewriter_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected)
