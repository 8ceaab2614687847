"""Server-Sent Events framing, without any I/O.

The gateway speaks SSE in three places: the server writes it to browsers and CLI
clients (``encode`` and friends, through the stream log and the event-stream
response), the Python client reads it back, and the upstream reader
(``models/openai_chunks.py``) consumes a model provider's SSE stream; both
readers use ``Parser``. Keeping the wire format in one sans-I/O module (bytes
in, events out; events in, bytes out) means all three share exactly one reading
of the WHATWG rules (HTML §9.2.6), can be tested without sockets or event loops,
and cannot drift apart on the details that differ between implementations:
split CRLFs, a split UTF-8 character, the BOM, ``retry`` validation, NUL in
``id``, and line ends (only CR, LF and CRLF; never U+2028, U+2029 or NEL).

The parser also enforces a size cap on the event being assembled, so a hostile
or broken peer that never sends a blank line (or never sends a line end at all)
cannot grow our memory without bound. The client keeps the default cap; the
upstream reader sets it per upstream (``max_event_chars``).
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

__all__ = [
    "Event",
    "EventTooLarge",
    "Parser",
    "ProtocolError",
    "encode",
    "encode_comment",
    "encode_retry",
]

# Only these three are line ends in SSE; str.splitlines() would also split on
# \x0b, \x0c, \x1c-\x1e, \x85, \u2028 and \u2029, corrupting data.
_LINE_END = re.compile(r"\r\n|\r|\n")
# Joining the pieces of an unfinished line now and then bounds the per-piece
# object overhead when a peer trickles a long line in tiny chunks.
_MAX_PENDING_PIECES = 1024


@dataclass(frozen=True, slots=True)
class Event:
    """One dispatched event.

    ``id`` and ``retry`` describe only the block that produced this event (None if
    it had no such field), so a resuming client can remember the id of the last
    event it actually received rather than one announced by an unfinished block.
    """

    data: str = ""
    event: str = "message"
    id: str | None = None
    retry: int | None = None


class ProtocolError(ValueError):
    """The byte stream cannot be interpreted as (or is no longer accepted as) SSE."""


class EventTooLarge(ProtocolError):
    """The event being assembled exceeded the parser's ``max_event_size``.

    ``events`` are the complete events the same ``feed`` call read before the one
    that overflowed: a caller that stops at the error still gets everything the peer
    finished sending (an answer's last tokens often share a read with what follows).
    """

    def __init__(self, message: str, events: list[Event] | None = None) -> None:
        super().__init__(message)
        self.events: list[Event] = events or []


def _check_field(kind: str, value: str) -> None:
    if "\r" in value or "\n" in value:
        raise ValueError(f"SSE {kind} must not contain CR or LF: {value!r}")


def encode(event: Event) -> bytes:
    """Serialise one event as UTF-8, terminated by the blank line that dispatches it.

    SSE has no escape mechanism: CR, LF and CRLF inside ``data`` can only be sent
    as line breaks between ``data:`` lines, and every reader turns those back into
    LF. So a CR or CRLF in ``data`` arrives as LF. Payloads that must survive byte
    for byte (the application's token text) are sent as JSON strings, whose
    escaping keeps CR out of the wire format entirely.

    Raises ValueError for values the format cannot carry: an event name or id with
    CR/LF, an id with NUL (readers ignore it), an empty event name (readers would
    turn it into "message") or a negative retry.
    """
    data, name, ident, retry = event.data, event.event, event.id, event.retry
    if name != "message":
        if not name:
            raise ValueError("SSE event name must not be empty: ''")
        _check_field("event name", name)
    if ident is None and retry is None:
        if "\n" not in data and "\r" not in data:
            # Hot path: one token of one stream, no validation of id/retry needed.
            if name == "message":
                return f"data: {data}\n\n".encode()
            return f"event: {name}\ndata: {data}\n\n".encode()
        head = "" if name == "message" else f"event: {name}\n"
    else:
        head = ""
        if ident is not None:
            _check_field("id", ident)
            if "\0" in ident:
                raise ValueError(f"SSE id must not contain NUL: {ident!r}")
            head = f"id: {ident}\n"
        if name != "message":
            head += f"event: {name}\n"
        if retry is not None:
            if retry < 0:
                raise ValueError(f"SSE retry must not be negative: {retry!r}")
            head += f"retry: {retry}\n"
    if "\r" in data:
        data = data.replace("\r\n", "\n").replace("\r", "\n")
    body = data.replace("\n", "\ndata: ")
    return f"{head}data: {body}\n\n".encode()


def encode_comment(text: str = "") -> bytes:
    """A comment block, which readers ignore: used as a heartbeat (``": ping"``).

    Keeps idle connections from being closed by proxies without producing events.
    Multi-line text is refused rather than silently split.
    """
    if not text:
        return b":\n\n"
    _check_field("comment", text)
    return f": {text}\n\n".encode()


def encode_retry(milliseconds: int) -> bytes:
    """A block that only sets the client's reconnection delay; it dispatches nothing."""
    if milliseconds < 0:
        raise ValueError(f"SSE retry must not be negative: {milliseconds!r}")
    return f"retry: {milliseconds}\n\n".encode()


class Parser:
    """Incremental SSE reader: feed it bytes as they arrive, get completed events.

    ``last_event_id`` is the WHATWG "last event ID buffer": it changes as soon as an
    ``id`` line is read, even if the block is never completed. To resume after a
    dropped connection, prefer the ``id`` of the last *dispatched* Event.

    ``max_event_size`` counts decoded characters of the data buffer plus the line
    currently being read (event names and ids are bounded by the same line check).
    Exceeding it raises EventTooLarge. After EventTooLarge, or after close(), the
    parser is finished and feed() raises ProtocolError: the stream should be
    dropped, since its position within an event is no longer known.
    """

    def __init__(self, max_event_size: int = 1 << 20) -> None:
        if max_event_size < 1:
            raise ValueError(f"max_event_size must be positive: {max_event_size!r}")
        self.max_event_size = max_event_size
        self.last_event_id: str = ""
        self.retry: int | None = None
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._started = False  # whether the BOM position has been passed
        self._skip_lf = False  # previous chunk ended in CR: a leading LF completes a CRLF
        self._finished = False
        self._pending: list[str] = []  # pieces of the current, unterminated line
        self._pending_len = 0
        self._data: list[str] = []  # data lines of the current block
        self._data_len = 0  # characters in the data buffer, "\n" separators included
        self._event_type = ""
        self._block_id: str | None = None
        self._block_retry: int | None = None

    def feed(self, chunk: bytes) -> list[Event]:
        """Consume the next chunk; return the events whose blank line it contained."""
        if self._finished:
            raise ProtocolError("SSE parser is closed (close() was called or an error occurred)")
        text = self._decoder.decode(chunk)
        if not text:
            return []
        if not self._started:
            self._started = True
            if text[0] == "\ufeff":
                text = text[1:]
        if self._skip_lf and text:
            self._skip_lf = False
            if text[0] == "\n":
                text = text[1:]
        if not text:
            return []
        if "\r" in text:
            lines = _LINE_END.split(text)
            # Ending the line at a trailing CR dispatches without waiting for
            # the next chunk; a following LF is then swallowed.
            self._skip_lf = text[-1] == "\r"
        else:
            lines = text.split("\n")
        tail = lines.pop()
        limit = self.max_event_size
        if not lines:
            self._pending.append(tail)
            self._pending_len += len(tail)
            if len(self._pending) > _MAX_PENDING_PIECES:
                self._pending = ["".join(self._pending)]
            self._check_size(self._data_len + self._pending_len)
            return []
        if self._pending:
            self._pending.append(lines[0])
            lines[0] = "".join(self._pending)
            self._pending = []
        self._pending_len = 0

        events: list[Event] = []
        data = self._data
        size = self._data_len
        for line in lines:
            if size + len(line) > limit:
                self._check_size(size + len(line), events)
            if not line:
                if data:
                    events.append(
                        Event(
                            "\n".join(data),
                            self._event_type or "message",
                            self._block_id,
                            self._block_retry,
                        )
                    )
                    data = self._data = []
                    size = 0
                self._event_type = ""
                self._block_id = None
                self._block_retry = None
                continue
            if line[0] == ":":
                continue
            name, _, value = line.partition(":")
            if value[:1] == " ":
                value = value[1:]
            if name == "data":
                data.append(value)
                size += len(value) + 1
            elif name == "event":
                self._event_type = value
            elif name == "id":
                if "\0" not in value:
                    self.last_event_id = value
                    self._block_id = value
            elif name == "retry":
                self._set_retry(value)
        self._data_len = size
        if tail:
            self._pending = [tail]
            self._pending_len = len(tail)
            self._check_size(size + self._pending_len, events)
        return events

    def close(self) -> list[Event]:
        """Mark the end of the stream; an event without its blank line is discarded.

        Returns a list (always empty) so callers can treat it like a final feed().
        """
        self._finished = True
        self._pending = []
        self._pending_len = 0
        self._data = []
        self._data_len = 0
        return []

    def _set_retry(self, value: str) -> None:
        # str.isdigit alone accepts non-ASCII digits such as "１２"; the spec
        # allows only ASCII 0-9.
        if value.isascii() and value.isdigit():
            try:
                retry = int(value)
            except ValueError:  # beyond int()'s digit limit: unusable anyway
                return
            self.retry = retry
            self._block_retry = retry

    def _check_size(self, size: int, events: list[Event] | None = None) -> None:
        if size > self.max_event_size:
            self._finished = True
            raise EventTooLarge(
                f"SSE event exceeds {self.max_event_size} characters (data plus the current line)",
                events,
            )
