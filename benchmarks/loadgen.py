"""A raw asyncio HTTP/1.1 client, small enough that the servers are what gets measured.

httpx (and any general client) spends tens of microseconds per response chunk in
its own machinery; at a million events per run that is the benchmark measuring
the client. This module is one ``asyncio.Protocol`` per connection: it writes the
request, reads the head, undoes ``Transfer-Encoding: chunked`` itself and hands
the body to typewriter's own :class:`typewriter.sse.Parser`, the same parser
every typewriter client uses, so both servers are read by one reading of SSE.

Three ways to consume a body, because the scenarios need different things:

- ``defer``: keep the de-chunked bytes and parse them after the clock stopped.
  Parsing costs more CPU than the fastest server spends sending, so parsing
  inline would make the throughput run measure this process.
- ``live``: parse as bytes arrive and report events with the arrival time
  (latency and stop scenarios).
- ``idle``: only note that the first body bytes came (idle-connection memory).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any, Literal, cast

from typewriter import sse

__all__ = ["ChunkedDecoder", "Connection", "HttpError", "open_request", "request", "request_json"]

Mode = Literal["defer", "live", "idle"]
OnEvents = Callable[[list[sse.Event], float], None]
_MAX_HEAD = 64 * 1024


class HttpError(Exception):
    """The server answered in a way the benchmark cannot use (status, framing, early close)."""


class ChunkedDecoder:
    """Incremental ``Transfer-Encoding: chunked`` decoder (RFC 9112 §7.1).

    ``feed`` returns the payload pieces found in the given bytes; ``done`` turns
    true once the last chunk and its trailer section were read. Chunk
    extensions and trailers are accepted and ignored.
    """

    __slots__ = ("done", "_tail", "_remaining", "_need_crlf", "_in_trailer")

    def __init__(self) -> None:
        self.done = False
        self._tail = b""
        self._remaining = 0  # payload bytes of the current chunk not yet seen
        self._need_crlf = False  # the CRLF after a chunk's payload
        self._in_trailer = False

    def feed(self, data: bytes) -> list[bytes]:
        if self._tail:
            data = self._tail + data
            self._tail = b""
        out: list[bytes] = []
        pos, end = 0, len(data)
        while pos < end and not self.done:
            if self._remaining:
                take = min(self._remaining, end - pos)
                out.append(data[pos : pos + take])
                pos += take
                self._remaining -= take
                self._need_crlf = self._remaining == 0
                continue
            if self._need_crlf:
                if end - pos < 2:
                    break
                if data[pos : pos + 2] != b"\r\n":
                    raise HttpError("chunked body: missing CRLF after a chunk")
                pos += 2
                self._need_crlf = False
                continue
            eol = data.find(b"\r\n", pos)
            if eol < 0:
                if end - pos > 4096:
                    raise HttpError("chunked body: chunk-size line too long")
                break
            line = data[pos:eol]
            pos = eol + 2
            if self._in_trailer:
                self.done = not line  # the blank line ends the trailer section
                continue
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise HttpError(f"chunked body: bad chunk size {line[:40]!r}") from None
            if size == 0:
                self._in_trailer = True
            else:
                self._remaining = size
        if pos < end and not self.done:
            self._tail = data[pos:]
        return out


class Connection(asyncio.Protocol):
    """One request on its own connection; the response body is read as ``mode`` says.

    Times are taken once per ``data_received``: ``time.time()`` for events handed
    to ``on_events`` (comparable with the servers' timestamps) and
    ``time.perf_counter()`` for ``finished_at`` (durations).
    """

    def __init__(self, request: bytes, mode: Mode, on_events: OnEvents | None = None) -> None:
        loop = asyncio.get_running_loop()
        self.request = request
        self.mode = mode
        self.on_events = on_events
        self.head: asyncio.Future[None] = loop.create_future()
        self.first_body: asyncio.Future[None] = loop.create_future()
        self.done: asyncio.Future[None] = loop.create_future()
        self.status = 0
        self.headers: dict[str, str] = {}
        self.first_body_at = 0.0  # time.time() of the first body bytes
        self.finished_at = 0.0
        self.pieces: list[bytes] = []
        self.parser = sse.Parser()
        self.transport: asyncio.Transport | None = None
        self._buffer = b""
        self._chunked: ChunkedDecoder | None = None
        self._length: int | None = None  # Content-Length left to read; None: until close
        self._in_body = False

    # -- asyncio.Protocol --------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        try:
            if not self._in_body:
                self._buffer += data
                end = self._buffer.find(b"\r\n\r\n")
                if end < 0:
                    if len(self._buffer) > _MAX_HEAD:
                        raise HttpError("response head too large")
                    return
                data = self._buffer[end + 4 :]
                self._read_head(self._buffer[:end])
                self._buffer = b""
                if self.done.done() or not data:
                    return
            if self._chunked is not None:
                pieces = self._chunked.feed(data)
                complete = self._chunked.done
            else:
                if self._length is not None:
                    data = data[: self._length]
                    self._length -= len(data)
                pieces, complete = [data], self._length == 0
            if pieces:
                self._consume(pieces)
            if complete:
                self._finish(None)
        except Exception as exc:  # any failure fails this connection only
            self._finish(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._in_body and self._chunked is None and self._length is None:
            self._finish(None)  # a body delimited by the close
        else:
            self._finish(HttpError(f"connection closed before the response ended ({exc})"))

    # -- internals ---------------------------------------------------------------

    def _read_head(self, head: bytes) -> None:
        status_line, *lines = head.decode("latin-1").split("\r\n")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
            raise HttpError(f"not an HTTP/1.x response: {status_line[:80]!r}")
        self.status = int(parts[1])
        for line in lines:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()
        self._in_body = True
        if not self.head.done():
            self.head.set_result(None)
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            self._chunked = ChunkedDecoder()
        elif "content-length" in self.headers:
            self._length = int(self.headers["content-length"])
        elif self.status in (204, 304):
            self._length = 0
        if self._length == 0:
            self._finish(None)

    def _consume(self, pieces: list[bytes]) -> None:
        if not self.first_body.done():
            self.first_body_at = time.time()
            self.first_body.set_result(None)
        if self.mode == "defer":
            self.pieces.extend(pieces)
        elif self.mode == "live":
            now = time.time()
            events: list[sse.Event] = []
            for piece in pieces:
                events.extend(self.parser.feed(piece))
            if events and self.on_events is not None:
                self.on_events(events, now)

    def _finish(self, error: Exception | None) -> None:
        if self.done.done():
            return
        self.finished_at = time.perf_counter()
        for future in (self.head, self.first_body):
            if not future.done():
                future.set_exception(error or HttpError("the response ended without a body"))
                future.exception()  # mark retrieved: callers may only await ``done``
        if error is None:
            self.done.set_result(None)
        else:
            self.done.set_exception(error)
            self.done.exception()  # retrieved: a caller that closed on purpose need not await
        if self.transport is not None and error is not None:
            self.transport.close()

    # -- for callers -------------------------------------------------------------

    def body(self) -> bytes:
        return b"".join(self.pieces)

    def events(self) -> list[sse.Event]:
        """Parse a ``defer`` body now, after the measurement."""
        parser = sse.Parser()
        return parser.feed(self.body())

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def build_request(
    method: str,
    path: str,
    port: int,
    *,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"host: 127.0.0.1:{port}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"content-length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def open_request(
    port: int,
    method: str,
    path: str,
    *,
    mode: Mode = "defer",
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    on_events: OnEvents | None = None,
) -> Connection:
    """Connect to 127.0.0.1:``port`` and send one request; the response arrives later."""
    loop = asyncio.get_running_loop()
    raw = build_request(method, path, port, body=body, headers=headers)
    _, connection = await loop.create_connection(
        lambda: Connection(raw, mode, on_events), "127.0.0.1", port
    )
    return connection


async def request(
    port: int, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> Connection:
    """A whole request/response on a fresh connection, closed afterwards."""
    connection = await open_request(port, method, path, body=body, headers=headers)
    try:
        await connection.done
    finally:
        connection.close()
    return connection


async def request_json(port: int, method: str, path: str, payload: Any) -> tuple[int, Any]:
    """POST-style JSON call without httpx, for the scenarios that make hundreds of them."""
    body = json.dumps(payload).encode()
    response = await request(port, method, path, body, headers={"content-type": "application/json"})
    return response.status, json.loads(response.body() or b"null")
