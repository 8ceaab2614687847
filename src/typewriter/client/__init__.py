"""The Python clients: ``Client`` (sync) and ``AsyncClient`` (asyncio), the whole API.

They ask in the detached way and follow ``events_url``: if the connection drops, they
reconnect with the id of the last event actually received, so the answer continues with
no gap and no duplicate. Stop is an explicit cancel, which also works when the
connection is the thing that broke. Events are the typed records of
``typewriter.events``; errors are the exceptions of ``typewriter.client.errors``.

The package's layout (each module one job):

- ``calls``: every endpoint's request and the decoding of its reply, without I/O;
- ``follow``: following a stream and the resume policy, a state machine without I/O;
- ``errors``: the exceptions, and the one function that turns an error reply into one;
- ``records``: ``Asked``, ``StreamEvent``, ``Assistants``;
- ``sync``, ``aio``: the thin transports over ``httpx.Client`` and ``httpx.AsyncClient``;

See docs/client.md.
"""

from __future__ import annotations

from typewriter.client.aio import AsyncClient
from typewriter.client.errors import (
    AnswerInProgress,
    ApiError,
    BadRequest,
    ClientError,
    Conflict,
    ConnectionFailed,
    ConnectionLost,
    Forbidden,
    InvalidField,
    NotFound,
    PayloadTooLarge,
    ProtocolError,
    RateLimited,
    ServerError,
    ServiceUnavailable,
    StreamExpired,
    Unauthorized,
)
from typewriter.client.records import Asked, Assistants, StreamEvent
from typewriter.client.sync import Client

__all__ = [
    "AnswerInProgress",
    "ApiError",
    "Asked",
    "AsyncClient",
    "Assistants",
    "BadRequest",
    "Client",
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
    "StreamEvent",
    "StreamExpired",
    "Unauthorized",
]
