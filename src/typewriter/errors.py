"""Every error typewriter raises on purpose, and the HTTP status it hints at.

One hierarchy keeps the mapping to the contract's error shape
``{"error": {"code", "message"}}`` in one place: the API layer turns any
``TypewriterError`` into its ``status`` and ``code`` without knowing the
individual classes, and anything else becomes a bare 500 with no details.
``status`` is a hint, as h11's ``error_status_hint``: the use case raises
these without speaking HTTP, and the API answers with the status unless a
route knows better (an unknown assistant is OpenAI's 404 ``model_not_found``).

::

    TypewriterError                 500 internal_error
    ├── BadRequest                  400 bad_request
    │   └── InvalidLastEventId      400 invalid_last_event_id
    ├── Unauthorized                401 unauthorized (+ WWW-Authenticate)
    ├── NotFound                    404 not_found
    │   └── StreamNotFound          404 stream_not_found
    ├── AnswerInProgress            409 answer_in_progress (+ stream_id)
    ├── StreamTakenOver             409 interrupted (between replicas, never sent)
    ├── StreamExpired               410 stream_expired
    ├── PayloadTooLarge             413 payload_too_large
    ├── UnsupportedMediaType        415 unsupported_media_type
    ├── InvalidField                422 invalid_field (+ fields: which, and why)
    │   └── UnknownAssistant        422 invalid_field (field: assistant)
    ├── MessageTooLong              422 invalid_field (the API names the fields)
    ├── TooManyRequests             429 rate_limited (+ Retry-After)
    ├── StoreUnavailable            503 store_unavailable
    ├── BrokerUnavailable           503 broker_unavailable
    │   └── BrokerFull              503 broker_unavailable (Redis at maxmemory)
    ├── RetainedBytesFull           503 retained_bytes_full (+ Retry-After)
    ├── Draining                    503 draining (+ Retry-After)
    ├── ConfigError                 (start-up only: a wrong setting)
    └── ModelError                  502 upstream_error
        ├── ModelUnavailable        503 upstream_unavailable
        ├── ModelTimeout            504 upstream_timeout
        ├── UpstreamEventTooLarge   502 upstream_event_too_large
        └── UpstreamIncomplete      502 upstream_incomplete

Messages quote the bad value and say what would be right, because the person
reading them is usually a developer wiring up a client.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = [
    "AnswerInProgress",
    "BadRequest",
    "BrokerFull",
    "BrokerUnavailable",
    "ConfigError",
    "Draining",
    "InvalidField",
    "InvalidLastEventId",
    "MessageTooLong",
    "ModelError",
    "ModelTimeout",
    "ModelUnavailable",
    "NotFound",
    "PayloadTooLarge",
    "RetainedBytesFull",
    "StoreUnavailable",
    "StreamExpired",
    "StreamNotFound",
    "StreamTakenOver",
    "TooManyRequests",
    "TypewriterError",
    "Unauthorized",
    "UnknownAssistant",
    "UnsupportedMediaType",
    "UpstreamEventTooLarge",
    "UpstreamIncomplete",
]


class TypewriterError(Exception):
    """Base class; ``status`` is the HTTP status hint, ``code`` the stable machine name."""

    status: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, *, code: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details

    @property
    def headers(self) -> Mapping[str, str]:
        """Response headers the error needs (``Retry-After``, ``WWW-Authenticate``)."""
        return {}

    def to_dict(self) -> dict[str, Any]:
        """The contract's error body."""
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        body.update(self.details)
        return {"error": body}


class BadRequest(TypewriterError):
    status = 400
    code = "bad_request"


class InvalidLastEventId(BadRequest):
    code = "invalid_last_event_id"


class Unauthorized(TypewriterError):
    """No API key, a wrong or revoked one, or a bad or expired ticket."""

    status = 401
    code = "unauthorized"

    @property
    def headers(self) -> Mapping[str, str]:
        # Every 401 names the scheme that would work (RFC 9110 §11.6.1); a ticket's URL
        # takes an API key too.
        return {"www-authenticate": 'Bearer realm="typewriter"'}


class TooManyRequests(TypewriterError):
    """A per-user limit; ``retry_after`` seconds is when trying again makes sense."""

    status = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: float, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = max(1, int(retry_after + 0.999))

    @property
    def headers(self) -> Mapping[str, str]:
        return {"retry-after": str(self.retry_after)}


class NotFound(TypewriterError):
    status = 404
    code = "not_found"


class StreamNotFound(NotFound):
    code = "stream_not_found"


class StreamExpired(TypewriterError):
    status = 410
    code = "stream_expired"


class PayloadTooLarge(TypewriterError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(TypewriterError):
    status = 415
    code = "unsupported_media_type"


class InvalidField(TypewriterError):
    """Fields of a request that are wrong: ``fields`` lists ``{"field", "message"}`` for each."""

    status = 422
    code = "invalid_field"

    @staticmethod
    def of(fields: Sequence[Mapping[str, str]]) -> InvalidField:
        """One error naming every wrong field; its message shows the first five."""
        shown = "; ".join(f"{f['field']}: {f['message']}" for f in fields[:5])
        if len(fields) > 5:
            shown += f"; and {len(fields) - 5} more"
        return InvalidField(shown, fields=[dict(f) for f in fields])


class UnknownAssistant(InvalidField):
    """No assistant of that name is configured; the message lists those that are."""

    def __init__(self, name: str, known: Iterable[str]) -> None:
        names = ", ".join(sorted(known))
        super().__init__(
            f"assistant {name[:100]!r} is not configured; choose one of: {names}",
            fields=[{"field": "assistant", "message": f"unknown assistant; known: {names}"}],
        )
        self.name = name


class MessageTooLong(TypewriterError):
    """Messages of a question longer than ``limit`` characters: ``lengths`` maps each one's
    position in the question to its length. The API names the request field it came from."""

    status = 422
    code = "invalid_field"

    def __init__(self, lengths: dict[int, int], limit: int) -> None:
        shown = ", ".join(f"message {i}: {n}" for i, n in list(lengths.items())[:5])
        super().__init__(f"{shown} characters; the limit is {limit} (max_message_chars)")
        self.lengths = lengths
        self.limit = limit


class StoreUnavailable(TypewriterError):
    """The database cannot be reached; the request may be retried later."""

    status = 503
    code = "store_unavailable"


class BrokerUnavailable(TypewriterError):
    """The stream broker (Redis) cannot be reached; the request may be retried later."""

    status = 503
    code = "broker_unavailable"


class BrokerFull(BrokerUnavailable):
    """Redis refused an event for want of memory (``maxmemory``, ``noeviction``).

    ``written`` is the number of the stream's last event Redis holds: what its
    listeners saw, and so what is stored of the answer, which ends right there.
    """

    def __init__(self, message: str, written: int) -> None:
        super().__init__(message)
        self.written = written


class RetainedBytesFull(TypewriterError):
    """Answers still being written fill the memory the in-process broker may keep for
    streams (``max_retained_bytes``): no new one starts until some end. Raised before
    anything is recorded, so the same request may be sent again after ``Retry-After``."""

    status = 503
    code = "retained_bytes_full"

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = max(1, int(retry_after + 0.999))

    @property
    def headers(self) -> Mapping[str, str]:
        return {"retry-after": str(self.retry_after)}


class Draining(TypewriterError):
    """The server is stopping: it lets running answers finish but starts no new one.

    Raised before anything is recorded or streamed, so the same request is safe to
    send again at once: ``Retry-After`` says so, and a load balancer that retries
    it reaches another replica (or this one, restarted).
    """

    status = 503
    code = "draining"
    retry_after = 1

    def __init__(self) -> None:
        super().__init__("the server is shutting down and starts no new answers; ask again")

    @property
    def headers(self) -> Mapping[str, str]:
        return {"retry-after": str(self.retry_after)}


class AnswerInProgress(TypewriterError):
    """The conversation's last answer is still being written: one answer at a time.

    A question asked meanwhile would be recorded before that answer, so the answer
    would miss from its own history; refusing it keeps every history in order.
    ``stream_id`` (in the body too) is the answer to follow or stop; ``message_ids``
    and ``started_at`` are what the use case needs to judge an answer whose stream
    ended without its end being stored.
    """

    status = 409
    code = "answer_in_progress"

    def __init__(self, stream_id: str, message_ids: list[str], started_at: float) -> None:
        super().__init__(
            "an answer is still being written in this conversation; wait for its end "
            "(follow stream_id) or stop it, then ask again",
            stream_id=stream_id,
        )
        self.stream_id = stream_id
        self.message_ids = message_ids
        self.started_at = started_at


class StreamTakenOver(TypewriterError):
    """This replica lost its lease on a stream and another one ended it ``interrupted``."""

    status = 409
    code = "interrupted"


class ConfigError(TypewriterError):
    """A setting that cannot work; raised at start-up, never from a request."""

    code = "config_error"


class ModelError(TypewriterError):
    """The model failed; inside a running stream this becomes an ``error`` event."""

    status = 502
    code = "upstream_error"


class ModelUnavailable(ModelError):
    """No upstream answered. The user gets one plain sentence: which upstream failed and
    how is for the operator, and goes to the log."""

    status = 503
    code = "upstream_unavailable"

    def __init__(self, message: str = "The model is not reachable right now.") -> None:
        super().__init__(message)


class ModelTimeout(ModelError):
    status = 504
    code = "upstream_timeout"


class UpstreamEventTooLarge(ModelError):
    """The upstream sent one event over its ``max_event_chars``: it broke its own protocol."""

    code = "upstream_event_too_large"


class UpstreamIncomplete(ModelError):
    """The upstream's stream ended with neither a finish reason nor ``[DONE]``: the answer
    may have been cut anywhere, so it ends as an error rather than looking complete."""

    code = "upstream_incomplete"
