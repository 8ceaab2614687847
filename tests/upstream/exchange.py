"""One chat request's response side, as the scriptable upstream (``server.py``) drives it.

Besides sending, it can break the TCP connection mid-response, which ASGI has no word for.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Header = tuple[bytes, bytes]
Headers = list[Header]

DROP_FLUSH_TIMEOUT = 5.0


def transport_of(send: Send) -> asyncio.Transport | None:
    """The connection's transport, to close it without ending the HTTP response properly.

    ASGI has no way to say "break this connection", and uvicorn answers a request whose app
    failed before starting a response with a clean 500. uvicorn's ``send`` is a bound method
    of its request/response cycle, which holds the transport; that is what we reach for.
    """
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    return transport if isinstance(transport, asyncio.BaseTransport) else None  # type: ignore[return-value]


class Exchange:
    """One chat request's response side: what was sent, and whether it ended or broke."""

    def __init__(self, record: dict[str, Any], send: Send) -> None:
        self.record = record
        self._send = send
        self.transport = transport_of(send)
        self.finishing = False
        self.dropping = False
        self.gone = asyncio.Event()
        self.write_bytes: int | None = None  # cut every body into writes of at most this many

    def _writes(self, data: bytes) -> list[bytes]:
        size = self.write_bytes
        if not size or len(data) <= size:
            return [data]
        return [data[i : i + size] for i in range(0, len(data), size)]

    async def start(self, status: int, headers: Headers) -> None:
        self.record["status"] = status
        await self._send({"type": "http.response.start", "status": status, "headers": headers})
        self.record["headers_sent"] = time.time()

    async def body(self, data: bytes) -> None:
        for piece in self._writes(data):
            await self._send({"type": "http.response.body", "body": piece, "more_body": True})

    async def finish(self, data: bytes = b"") -> None:
        # Set first: uvicorn reports http.disconnect to receive() once a response completes.
        self.finishing = True
        *pieces, last = self._writes(data)
        for piece in pieces:
            await self._send({"type": "http.response.body", "body": piece, "more_body": True})
        await self._send({"type": "http.response.body", "body": last, "more_body": False})
        self.record["completed"] = True

    async def respond(
        self, status: int, body: bytes, content_type: str, extra: Sequence[Header] = ()
    ) -> None:
        headers = [
            (b"content-type", content_type.encode("latin-1")),
            (b"content-length", str(len(body)).encode("ascii")),
            *extra,
        ]
        await self.start(status, headers)
        await self.finish(body)

    async def drop(self, mode: str) -> None:
        """Close the TCP connection mid-response: no terminating chunk, no complete body.

        ``fin``: data already written is flushed, then the connection is closed, so the client
        reads every delta sent and then an incomplete body. ``rst``: SO_LINGER 0 and abort, so
        the kernel sends a reset; the client may lose data it had not read yet.
        """
        self.dropping = True
        self.record["dropped"] = time.time()
        transport = self.transport
        if transport is None:
            # Not uvicorn's cycle: fall back to an exception, which uvicorn turns into a
            # closed connection once the response has started (and a 500 before).
            raise ConnectionAbortedError("drop requested but transport is unavailable")
        if mode == "rst":
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
        else:
            transport.close()
        try:
            await asyncio.wait_for(self.gone.wait(), DROP_FLUSH_TIMEOUT)
        except TimeoutError:
            transport.abort()  # the client never read what was buffered; stop waiting on it
            await self.gone.wait()
