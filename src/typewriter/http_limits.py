"""Bounds on what one connection may make the server hold: head size, time, and count.

uvicorn's httptools protocol buffers a request's head with no limit: a header
name or value is accumulated by concatenation until its line ends (quadratic,
and unbounded: 600 MB of header lines were all kept), the URL likewise, and a
connection that sends half a head, half a body or nothing at all is kept
forever. An app-level check cannot help, since the app is only called once the
whole head is in. So the bounds are kept where the bytes arrive, in a subclass
of uvicorn's ``HttpToolsProtocol`` (read from uvicorn 0.55.0; it overrides the
parser callbacks, ``connection_made``/``_lost``, ``data_received`` around the
parent's, and ``send_400_response``, all public and stable for years):

- the request line beyond ``max_url_bytes``: ``414``, counted as the parser
  hands the URL over, chunk by chunk;
- the headers beyond ``max_header_bytes`` or ``max_header_lines``: ``431``,
  checked exactly when the head is complete and, while it is still arriving,
  against the raw bytes received (so an endless header costs at most the limit
  plus one read, never the whole stream);
- a head not in within ``header_timeout``: ``408``, or a plain close when
  nothing came at all. The timer starts when the connection opens, or, for a
  later request on a kept-alive connection, after the read its head began in;
  until then uvicorn's keep-alive timer, set to ``header_timeout`` too, closes
  a connection that stays idle;
- a body not in full within ``body_timeout`` of the end of its head: ``408``;
- more than ``max_connections`` open connections (SSE listeners count: each is
  one): ``503`` at once.

Like nginx's ``client_header_timeout`` and ``large_client_header_buffers``, or
h11's ``max_incomplete_event_size``. A refusal is the contract's JSON with
``Connection: close``; the write side is then shut and what the client still
sends is read and dropped for a moment, so the client reads the refusal
instead of a reset. The fast path (a head in one read, a body in a few) arms
no timer at all and costs a few attribute tests per read.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
from dataclasses import dataclass
from typing import ClassVar, NoReturn, Protocol
from urllib.parse import unquote

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

__all__ = [
    "BoundedHttpToolsProtocol",
    "RequestBounds",
    "Render",
    "bounded_protocol",
    "connection_cap",
]

log = logging.getLogger(__name__)


class Render(Protocol):
    """Status, code, message, method and path (None while unknown) -> the JSON body."""

    def __call__(
        self, status: int, code: str, message: str, method: str | None, path: str | None
    ) -> bytes: ...


HEAD_SLACK = 1024  # the request line's method and version, a little optional whitespace
LINGER_SECONDS = 1.0  # how long a refused client's remaining bytes are read and dropped
DESCRIPTOR_RESERVE = 64  # at least: the listening socket, databases, Redis, upstreams, logs


@dataclass(frozen=True, slots=True)
class RequestBounds:
    max_header_bytes: int
    max_header_lines: int
    max_url_bytes: int
    header_timeout: float
    body_timeout: float
    max_connections: int

    @property
    def head_bytes(self) -> int:
        """Raw bytes a head may take while it is read: the URL, the headers, some slack."""
        return self.max_url_bytes + self.max_header_bytes + HEAD_SLACK


class _Refused(Exception):
    """Raised from a parser callback to stop parsing; the refusal is on the protocol."""


class _Silent(logging.Logger):
    """A refused connection's logger: uvicorn logs "Invalid HTTP request received." for
    any error raised in a parser callback, which a refusal is not (it is counted and
    answered). The connection is over, so nothing else is lost."""

    def handle(self, record: logging.LogRecord) -> None:
        return None


_SILENT = _Silent(__name__ + ".refused")


def _default_render(
    status: int, code: str, message: str, method: str | None, path: str | None
) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the bounds above; made by :func:`bounded_protocol`."""

    bounds: ClassVar[RequestBounds]
    render: ClassVar[Render] = staticmethod(_default_render)

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._in_head = False  # between the first byte of a request and its blank line
        self._read = 0  # the size of the read being parsed (-1 once a message ended in it)
        self._head_first = 0  # the size of the read the head began in (-1: unknown)
        self._head_bytes = 0  # raw bytes of the head after the read it began in
        self._body_due = False  # between the end of a head and the end of its body
        self._refusing: tuple[int, str, str] | None = None  # set before raising _Refused
        self._refused = False  # a refusal was sent: what still comes is dropped
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._linger: asyncio.TimerHandle | None = None

    # -- connection ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        cap = self.bounds.max_connections
        if len(self.connections) > cap:
            message = f"the server holds its most connections ({cap}); try again in a moment"
            self._refuse(503, "too_many_connections", message, retry_after=1)
            return
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self._head_timer, self._body_timer, self._linger):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._body_timer = self._linger = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # lingering after a refusal: read and dropped
        head_before = self._in_head
        self._read = len(data)
        HttpToolsProtocol.data_received(self, data)  # not super(): this runs for every read
        if self._in_head:  # a head still incomplete after this read
            if self._refused:
                return
            # The raw count: every read since the head began, the read it began in too
            # unless a previous message ended there (then that read is left out, and the
            # count is short by one read at most; the exact check at the head's end stays).
            if head_before:
                self._head_bytes += len(data)
            if self._head_first + self._head_bytes > self.bounds.head_bytes:
                self._refuse(431, "headers_too_large", self._headers_message())
                return
            if self._head_timer is None and (self.cycle is None or self.cycle.response_complete):
                self._arm_head_timer()
        elif self._body_due and self._body_timer is None and not self._refused:
            self._body_timer = self.loop.call_later(self.bounds.body_timeout, self._body_late)

    # -- parser callbacks --------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_first = self._read  # -1 if a previous message ended in this read
        self._head_bytes = 0

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > self.bounds.max_url_bytes:
            limit = self.bounds.max_url_bytes
            self._stop_parsing(
                414, "url_too_long", f"the request line's URL is too long: at most {limit} bytes"
            )

    def on_headers_complete(self) -> None:
        self._in_head = False
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        headers = self.headers
        bounds = self.bounds
        if len(headers) > bounds.max_header_lines or (
            # Each header line is at least its name, its value and 3 bytes: the sum is only
            # needed when the raw bytes of the head could hold more than the limit, or when
            # their count is short (the head began after a previous message, mid-read).
            (
                self._head_first < 0
                or self._head_first + self._head_bytes + len(headers) > bounds.max_header_bytes
            )
            and sum(len(name) + len(value) for name, value in headers) + 4 * len(headers)
            > bounds.max_header_bytes
        ):
            self._stop_parsing(431, "headers_too_large", self._headers_message())
        super().on_headers_complete()
        self._body_due = True

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._body_due = False
        self._read = -1  # what follows in this read is not all one head
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _stop_parsing(self, status: int, code: str, message: str) -> NoReturn:
        self._refusing = (status, code, message)
        self.logger = _SILENT
        raise _Refused

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a parser error, which a refusal raised from a callback is."""
        if self._refusing is not None:
            status, code, message = self._refusing
            self._refusing = None
            self._refuse(status, code, message)
        else:
            super().send_400_response(msg)

    # -- timers ------------------------------------------------------------------------

    def _arm_head_timer(self) -> None:
        self._head_timer = self.loop.call_later(self.bounds.header_timeout, self._head_late)

    def _head_late(self) -> None:
        self._head_timer = None
        if (
            self._refused
            or self.transport.is_closing()
            or self.transport.get_protocol() is not self
        ):
            return
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a response is on its way; the next read arms the timer again
        if self._in_head:
            seconds = f"{self.bounds.header_timeout:g}"
            self._refuse(
                408, "request_timeout", f"the request's head did not arrive within {seconds} s"
            )
        else:
            self.transport.close()  # nothing came: a silent or idle connection

    def _body_late(self) -> None:
        self._body_timer = None
        if not self._body_due or self._refused or self.transport.is_closing():
            return
        if self.transport.get_protocol() is not self:
            return
        cycle = self.cycle
        if cycle.response_started:
            self.transport.close()  # the app answered already: nothing more to say
            return
        cycle.disconnected = True  # the app's receive() now returns http.disconnect
        cycle.message_event.set()
        seconds = f"{self.bounds.body_timeout:g}"
        self._refuse(
            408, "request_timeout", f"the request's body did not arrive in full within {seconds} s"
        )

    # -- refusing ----------------------------------------------------------------------

    def _headers_message(self) -> str:
        bounds = self.bounds
        return (
            f"the request's headers are too large: at most {bounds.max_header_bytes} bytes "
            f"and {bounds.max_header_lines} lines"
        )

    def _refuse(
        self, status: int, code: str, message: str, *, retry_after: int | None = None
    ) -> None:
        """Send the refusal in the contract's shape, then close without a reset."""
        self._refused = True
        self._in_head = self._body_due = False
        for timer in (self._head_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._body_timer = None
        transport = self.transport
        if transport.is_closing():
            return
        if (
            self.cycle is not None
            and self.cycle.response_started
            and not self.cycle.response_complete
        ):
            transport.close()  # a response is half-sent: a second one cannot follow
            return
        method = path = None
        if self.parser is not None and status != 503:
            try:
                method = self.parser.get_method().decode("ascii", "replace")
            except Exception:  # no method parsed yet
                method = None
            target, query, _ = self.url.partition(b"?")
            if status != 414 or query:  # a URL cut short has a path only if its query began
                path = unquote(target.decode("latin-1"))
        body = self.render(status, code, message, method, path)
        head = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head.append(b"content-type: application/json\r\n")
        head.append(b"content-length: %d\r\n" % len(body))
        if retry_after is not None:
            head.append(b"retry-after: %d\r\n" % retry_after)
        head.append(b"connection: close\r\n\r\n")
        transport.write(b"".join(head) + body)
        if transport.can_write_eof():
            transport.write_eof()  # the client reads the refusal, then sees the end
            self._linger = self.loop.call_later(LINGER_SECONDS, transport.close)
        else:
            transport.close()


def bounded_protocol(
    bounds: RequestBounds, render: Render | None = None
) -> type[BoundedHttpToolsProtocol]:
    """A protocol class bound to ``bounds``, for ``uvicorn.Config(http=...)``, which
    builds each connection's protocol itself from the class."""
    namespace: dict[str, object] = {"bounds": bounds}
    if render is not None:
        namespace["render"] = staticmethod(render)
    return type("BoundedHttpToolsProtocol", (BoundedHttpToolsProtocol,), namespace)


def connection_cap(wanted: int) -> tuple[int, str | None]:
    """``max_connections`` as the descriptor limit allows, and why it was lowered if it was.

    Each connection holds a descriptor; past ``RLIMIT_NOFILE`` the server can open
    nothing at all (not its database, nor an upstream), and new clients hang in
    the listen queue instead of being told. A quarter of the limit (at least
    ``DESCRIPTOR_RESERVE``) is left for everything else.
    """
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted, None
    allowed = max(1, soft - max(DESCRIPTOR_RESERVE, soft // 4))
    if allowed >= wanted:
        return wanted, None
    note = (
        f"max_connections lowered from {wanted} to {allowed}: the descriptor limit "
        f"(RLIMIT_NOFILE) is {soft}, and {soft - allowed} are kept for the rest; "
        "raise it (ulimit -n, systemd LimitNOFILE=) to allow more"
    )
    return allowed, note
