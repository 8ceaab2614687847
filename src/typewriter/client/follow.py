"""Following a stream and resuming it, without any I/O: a state machine the transports drive.

Why a state machine (in the manner of h11 and wsproto) rather than a generator "plan":
following is a loop of connections, each a stream of chunks of unknown length, with
sleeps between them, and the sync and async transports differ in exactly those three
operations (connect, read a chunk, sleep). A ``Follower`` tells the transport which
request to make next (``request()``), takes what the connection gives (``accepts()``,
``feed()``, ``closed()``, ``refused()``, ``lost()``) and says how long to wait before the
next attempt (``delay``) or that it is over (``done``). Every decision lives here once:

- the resume point is the id of the last event *delivered* (``Last-Event-ID``), and an
  event at or below it is never delivered twice, so a resumed answer has no gap and no
  duplicate;
- the first reconnect waits what the server's ``retry:`` said; each further reconnect
  in a row doubles it, with jitter (half to all of it), up to ``ResumePolicy.cap``
  seconds, and at least a ``503``'s ``Retry-After``;
- a reconnect that delivers an event resets the count; ``max_reconnects`` reconnects in a
  row that deliver none (refused, cut, a ``502``/``503``/``504`` from a proxy or a
  stopping replica, a response closed before ``end``) give up: ``ConnectionLost``, or
  ``ConnectionFailed`` when the stream was never reached at all. Any other error reply
  is raised at once;
- a response closed cleanly before ``end`` (a replica stopping, a listener replaced) is
  resumed like a cut one; ``204`` means everything was delivered; ``end`` finishes.

The transports (``sync.py``, ``aio.py``) are the same dozen lines of glue over httpx, and
the tests of the policy need no server.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from typewriter import events, sse
from typewriter.client.calls import Api, Request
from typewriter.client.errors import (
    ApiError,
    ConnectionFailed,
    ConnectionLost,
    ProtocolError,
    api_error,
)
from typewriter.client.records import Asked, StreamEvent

__all__ = ["Follower", "ResumePolicy", "events_url"]

# A proxy in front of a restarting server, or a server stopping, answers these for a
# moment; on a reconnect they are worth another attempt, unlike a 404 or a 401.
_TRANSIENT = frozenset({502, 503, 504})


@dataclass(frozen=True, slots=True)
class ResumePolicy:
    """How hard ``follow`` tries to resume.

    ``max_reconnects`` consecutive attempts that deliver nothing give up (``0``: never
    reconnect). ``first_delay`` is used until the server sends ``retry:``; ``cap``
    bounds the doubled delays.
    """

    max_reconnects: int = 10
    cap: float = 30.0
    first_delay: float = 1.0

    def delay(self, retry: float, attempt: int, jitter: Callable[[], float]) -> float:
        """Seconds before reconnect ``attempt`` (0: the first since the last event)."""
        if attempt == 0:
            return retry
        return min(self.cap, max(retry, 0.1) * 2.0**attempt) * (0.5 + jitter() / 2)


def events_url(api: Api, target: Asked | str) -> str:
    """An Asked's ``events_url``, a stream id's (``st_…``), or an events URL as given."""
    if isinstance(target, Asked):
        return api.url(target.events_url)
    if "/" not in target:
        return api.url(f"/v1/streams/{target}/events")
    return api.url(target)


class Follower:
    """One ``follow``: its resume point, its connection attempts, its parser."""

    def __init__(
        self,
        api: Api,
        target: Asked | str,
        *,
        after: int = 0,
        policy: ResumePolicy | None = None,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._api = api
        self.url = events_url(api, target)
        self.stream_id = _stream_id(self.url)
        self._asking: Request | None = None  # a direct ask, until its response names the stream
        self.last_event_id = after
        self.policy = policy or ResumePolicy()
        self.done = False
        self.delay = 0.0
        self._headers = dict(api.headers, accept="text/event-stream")
        self._jitter = jitter
        self._retry = self.policy.first_delay
        self._reconnects = 0  # reconnects made since the last event delivered
        self._reached = False  # whether any attempt got a response
        self._parser = sse.Parser()

    @classmethod
    def asking(
        cls,
        api: Api,
        ask: Request,
        *,
        policy: ResumePolicy | None = None,
        jitter: Callable[[], float] = random.random,
    ) -> Follower:
        """A direct ask (``Api.ask_direct``): its first connection is the ask itself; once
        its response names the stream (``X-Stream-Id``), a cut is resumed like any other.
        Before that nothing is retried: sending the question again could ask it twice."""
        follower = cls(api, ask.url, policy=policy, jitter=jitter)
        follower._asking = ask
        return follower

    # -- what to do next ------------------------------------------------------------------

    def request(self) -> Request:
        """The next connection: from the last delivered event on."""
        self._parser = sse.Parser()
        if self._asking is not None:
            return self._asking
        headers = dict(self._headers)
        if self.last_event_id:
            headers["last-event-id"] = str(self.last_event_id)
        return Request("GET", self.url, headers)

    # -- what the connection gave ---------------------------------------------------------

    def accepts(self, status: int, headers: Mapping[str, str] | None = None) -> bool:
        """Whether this response's body is the event stream (``200``) or the end (``204``);
        otherwise the transport reads the body and calls :meth:`refused`."""
        if self._asking is not None and status == 200:
            stream_id = (headers or {}).get("x-stream-id")
            if not stream_id:
                raise ProtocolError(f"{self.display_url}: the answer names no X-Stream-Id")
            self._asking = None
            self.url = events_url(self._api, stream_id)
            self.stream_id = stream_id
        if status == 204:
            self._reached = True
            self.done = True
            return True
        if status == 200:
            self._reached = True
            return True
        return False

    def feed(self, chunk: bytes) -> list[StreamEvent]:
        """The new events in this chunk, each once, up to and including ``end``."""
        if self.done:
            return []
        try:
            parsed = self._parser.feed(chunk)
        except sse.ProtocolError as exc:
            raise ProtocolError(f"{self.display_url}: {exc}") from None
        if self._parser.retry is not None:
            self._retry = self._parser.retry / 1000
        out: list[StreamEvent] = []
        for event in parsed:
            ident = _ident(event.id)
            if ident is None or ident <= self.last_event_id:
                continue  # already delivered (or unnumbered): never twice
            if event.event not in events.KINDS:
                self.last_event_id = ident  # a kind this client does not know yet: received,
                continue  # so not asked for again, but not delivered
            try:
                record = events.decode(event.event, event.data)
            except events.EventDecodeError as exc:
                raise ProtocolError(f"{self.display_url}: {exc}") from None
            self.last_event_id = ident
            self._reconnects = 0
            out.append(StreamEvent(ident, record))
            if event.event == events.TERMINAL:
                self.done = True
                break
        return out

    def closed(self) -> None:
        """The response ended cleanly: finished, or to be resumed (a server stopping)."""
        if not self.done:
            self._failed("the server closed the response before the answer's end")

    def refused(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        """An error response: raised, unless it is a passing one worth another attempt."""
        error = api_error(status, headers, body)
        if status not in _TRANSIENT or self.policy.max_reconnects == 0 or self._asking is not None:
            raise error
        retry_after = getattr(error, "retry_after", None)
        self._failed(str(error), error, retry_after)

    def lost(self, reason: str) -> None:
        """The connection failed or broke (refused, reset, timed out)."""
        self._failed(reason)

    # -- the policy -----------------------------------------------------------------------

    @property
    def display_url(self) -> str:
        """The URL without its query: a ticket is a credential, not for error messages."""
        parts = urlsplit(self.url)
        return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))

    def _failed(
        self, reason: str, error: ApiError | None = None, retry_after: float | None = None
    ) -> None:
        if self._asking is not None:  # the question may or may not have been recorded
            raise ConnectionFailed(self.display_url, reason)
        if self._reconnects >= self.policy.max_reconnects:
            if error is not None:
                raise error
            if not self._reached:
                raise ConnectionFailed(self.display_url, reason)
            raise ConnectionLost(
                self.display_url, self.stream_id, self.last_event_id, self._reconnects, reason
            )
        self.delay = self.policy.delay(self._retry, self._reconnects, self._jitter)
        if retry_after is not None:
            self.delay = max(self.delay, retry_after)
        self._reconnects += 1


def _ident(value: str | None) -> int | None:
    if value is None or not value.isascii() or not value.isdigit():
        return None
    return int(value)


def _stream_id(url: str) -> str | None:
    parts = urlsplit(url).path.rstrip("/").split("/")
    if len(parts) >= 3 and parts[-1] == "events" and parts[-3] == "streams":
        return parts[-2]
    return None
