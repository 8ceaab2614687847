"""What the client raises: one hierarchy, mirroring the contract's error codes.

::

    ClientError                     everything the client raises
    ├── ConnectionFailed            the server cannot be reached at all (names the URL)
    ├── ConnectionLost              a followed stream could not be resumed in time
    ├── ProtocolError               the server's answer is not what the contract says
    └── ApiError                    the server answered the contract's error JSON
        ├── BadRequest          400
        ├── Unauthorized        401
        ├── Forbidden           403
        ├── NotFound            404
        ├── Conflict            409
        │   └── AnswerInProgress    409 answer_in_progress (.stream_id)
        ├── StreamExpired       410
        ├── PayloadTooLarge     413
        ├── InvalidField        422 (.fields)
        ├── RateLimited         429 (.retry_after)
        └── ServerError         5xx
            └── ServiceUnavailable 503 (.retry_after)

Callers catch by meaning (``except NotFound``), not by status numbers, and a
transport's own exceptions (httpx's) never escape: a script that catches
``ClientError`` has caught everything the client can raise. :func:`api_error`
is the one place a response becomes an exception, without any I/O, so the sync
and async clients cannot decode errors differently.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

__all__ = [
    "AnswerInProgress",
    "ApiError",
    "BadRequest",
    "ClientError",
    "Conflict",
    "ConnectionFailed",
    "ConnectionLost",
    "Forbidden",
    "InvalidField",
    "NotFound",
    "PayloadTooLarge",
    "ProtocolError",
    "RateLimited",
    "ServerError",
    "ServiceUnavailable",
    "StreamExpired",
    "Unauthorized",
    "api_error",
]


class ClientError(Exception):
    """Base of everything the client raises."""


class ConnectionFailed(ClientError):
    """The server could not be reached (refused, unresolvable, timed out, cut mid-request).

    ``str()`` names where: ``cannot reach http://127.0.0.1:8000: connection refused``.
    """

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot reach {url}: {reason}")
        self.url = url
        self.reason = reason


class ConnectionLost(ClientError):
    """A followed stream could not be resumed within ``max_reconnects`` attempts.

    ``last_event_id`` is the id of the last event delivered, so a caller can go on
    later with ``follow(stream_id, after=last_event_id)``.
    """

    def __init__(
        self, url: str, stream_id: str | None, last_event_id: int, attempts: int, reason: str
    ) -> None:
        super().__init__(
            f"lost the stream at {url} after {attempts} reconnect"
            f"{'' if attempts == 1 else 's'} (last event {last_event_id}): {reason}"
        )
        self.url = url
        self.stream_id = stream_id
        self.last_event_id = last_event_id
        self.attempts = attempts
        self.reason = reason


class ProtocolError(ClientError):
    """The server sent something the contract does not allow (an event that does not decode)."""


class ApiError(ClientError):
    """The server answered with an error: ``status``, ``code``, ``message``, the JSON ``body``."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        body: dict[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.body: dict[str, Any] = body or {}
        self.headers: dict[str, str] = {k.lower(): v for k, v in (headers or {}).items()}


class BadRequest(ApiError):
    """400: invalid_json, invalid_last_event_id, bad_request, ..."""


class Unauthorized(ApiError):
    """401: missing_api_key, invalid_api_key, invalid_ticket, ticket_expired."""


class Forbidden(ApiError):
    """403."""


class NotFound(ApiError):
    """404: stream_not_found, conversation_not_found, message_not_found, ..."""


class Conflict(ApiError):
    """409."""


class AnswerInProgress(Conflict):
    """409 answer_in_progress: the conversation's last answer is still being written.

    ``stream_id`` names it: follow it, or cancel it, then ask again.
    """

    @property
    def stream_id(self) -> str | None:
        value = self.body.get("error", {}).get("stream_id")
        return value if isinstance(value, str) else None


class StreamExpired(ApiError):
    """410: the stream finished and is past its retention (the stored answer remains)."""


class PayloadTooLarge(ApiError):
    """413."""


class InvalidField(ApiError):
    """422 invalid_field: ``fields`` lists each wrong field as ``{"field", "message"}``."""

    @property
    def fields(self) -> list[dict[str, Any]]:
        value = self.body.get("error", {}).get("fields")
        return [f for f in value if isinstance(f, dict)] if isinstance(value, list) else []


class _RetryAfter(ApiError):
    @property
    def retry_after(self) -> float | None:
        """Seconds to wait before asking again, from ``Retry-After`` (None if absent)."""
        return _seconds(self.headers.get("retry-after"))


class RateLimited(_RetryAfter):
    """429: rate_limited, too_many_streams or retained_share_full; see ``retry_after``."""


class ServerError(ApiError):
    """5xx: internal_error, upstream errors, ..."""


class ServiceUnavailable(ServerError, _RetryAfter):
    """503: draining, store_unavailable, broker_unavailable, ...; see ``retry_after``."""


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    410: StreamExpired,
    413: PayloadTooLarge,
    422: InvalidField,
    429: RateLimited,
    503: ServiceUnavailable,
}


def api_error(status: int, headers: Mapping[str, str], body: bytes) -> ApiError:
    """The exception for an error response: its class by status (and code where the
    contract gives one its own), its code and message from the error JSON.

    A body that is not the contract's JSON (a proxy's HTML page) still gives the status's
    class, with code ``http_error`` and the body's first 200 characters as the message.
    """
    text = body.decode("utf-8", errors="replace")
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(error, dict) and isinstance(error.get("code"), str):
        assert isinstance(parsed, dict)
        code, message, document = error["code"], str(error.get("message", "")), parsed
    else:
        code, message, document = "http_error", text[:200].strip() or f"HTTP {status}", {}
    kind = _BY_STATUS.get(status)
    if kind is None:
        kind = ServerError if status >= 500 else ApiError
    if code == "answer_in_progress":
        kind = AnswerInProgress
    return kind(status, code, message, document, headers)


def _seconds(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None  # an HTTP date: this server never sends one
    return seconds if seconds >= 0 else None
