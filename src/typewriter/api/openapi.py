"""The OpenAPI document, completed with what the routes cannot say about themselves.

Errors leave through the exception handlers, not the routes, so FastAPI knows
neither their statuses nor their shape (it documents its own ``{"detail"}``
422, which typewriter never sends). Here every ``/v1`` operation gets the
error responses it can really give, in the shape its route gives them (OpenAI's
for the routes tagged ``openai``, which :class:`~.openai_errors.OpenAIRoute`
always are), and the bearer scheme that signs it in, so that clients and
schema-driven testers generated from ``/openapi.json`` expect what the server does.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from .openai_errors import OPENAI_TAG

__all__ = ["install_openapi"]

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "fields": {"type": "array", "items": {"type": "object"}},
            },
        }
    },
}
_OPENAI_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}
_ERRORS = {
    400: "bad input: malformed JSON, a Last-Event-ID that is not an event id",
    401: "no API key, a wrong or revoked one, or a bad or expired ticket",
    404: "not found, or another user's",
    410: "finished and past its retention period",
    413: "body too large",
    414: "the URL is too long (the request line's bound)",
    415: "the body is not JSON",
    422: "invalid fields (which, and why)",
    429: "a per-user limit; see Retry-After",
    431: "the request's headers are too large",
    502: "the model failed",
    503: "the broker, the store or the model is unavailable, or the server is stopping "
    "(draining, with Retry-After); try again later",
    504: "the model took too long",
}


def install_openapi(app: FastAPI) -> None:
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            _complete(generate())
        assert app.openapi_schema is not None
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _complete(schema: dict[str, Any]) -> None:
    components = schema.setdefault("components", {})
    components.setdefault("securitySchemes", {})["bearer"] = {
        "type": "http",
        "scheme": "bearer",
        "description": "an API key from `typewriter users add` (when users exist)",
    }
    for path, operations in schema.get("paths", {}).items():
        if not path.startswith("/v1"):
            continue
        for operation in operations.values():
            shape = _OPENAI_ERROR if OPENAI_TAG in operation.get("tags", ()) else _ERROR
            operation["security"] = [{"bearer": []}, {}]  # {}: auth is off without users
            responses = operation.setdefault("responses", {})
            for status, description in _ERRORS.items():
                responses[str(status)] = {
                    "description": description,
                    "content": {"application/json": {"schema": shape}},
                }
    for unused in ("HTTPValidationError", "ValidationError"):
        components.get("schemas", {}).pop(unused, None)
