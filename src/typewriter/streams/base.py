"""The stream log and the broker interface every backend implements.

An answer is an append-only log of numbered events. Producers append; any
number of listeners read from their own cursor. The producer never waits for a
listener, and a listener that falls behind only lags: it holds no memory of its
own, because it reads the one shared log. That is what makes ``Last-Event-ID``
resumption exact, and why the interface speaks of cursors rather than queues.

A broker does several jobs, each a small protocol here: the log itself
(:class:`StreamLog`), the user's channel (:class:`UserChannel`), Stop
(:class:`Control`), the grace period (:class:`Presence`), leases and dead
replicas (:class:`Replicas`), start and health (:class:`Lifecycle`). Callers
depend on the ones they use; :class:`Broker` is all of them, what a backend
implements. Backends (in-process, Redis) are interchangeable behind it; the
contract suite in ``tests/streams`` runs unchanged against each of them.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Protocol, TypeAlias

from typewriter import sse
from typewriter.errors import InvalidLastEventId
from typewriter.events import TERMINAL

__all__ = [
    "Broker",
    "ChannelSubscription",
    "Control",
    "Entry",
    "Lifecycle",
    "Orphan",
    "Presence",
    "Replicas",
    "StreamInfo",
    "StreamLog",
    "Subscription",
    "TERMINAL_EVENT",
    "UserChannel",
    "channel_start",
    "encode_entry",
    "parse_channel_cursor",
    "parse_cursor",
]

TERMINAL_EVENT = TERMINAL
"""The name of the event that ends every stream (the answer's ``end``)."""
_DIGITS = re.compile(r"[0-9]{1,18}")
_CHANNEL_CURSOR = re.compile(r"(?:([0-9]{1,18})-)?([0-9]{1,18})")


Entry: TypeAlias = tuple[int, str, str, bytes]
"""One event of a log: ``(seq, event, data, wire)``.

``wire`` is the SSE encoding, made once and shared by every listener. A plain
tuple on purpose: tuples of strings and bytes are dropped from the cyclic
garbage collector's watch, so retaining millions of events (ten minutes of
streams) costs no collector time. A dataclass here made full collections pause
the event loop for hundreds of milliseconds under load.
"""


def encode_entry(seq: int, event: str, data: str, cursor: str | None = None) -> Entry:
    """Encode once at append time so that N listeners cost one encoding, not N."""
    wire = sse.encode(sse.Event(data=data, event=event, id=cursor or str(seq)))
    return (seq, event, data, wire)


def parse_cursor(value: str | None) -> int:
    """A ``Last-Event-ID`` as an int: absent or empty means "from the start".

    Only plain decimal digits count; "-1", "abc" or a 30-digit number are
    refused here, before any stream is touched.
    """
    if value is None or value == "":
        return 0
    if not _DIGITS.fullmatch(value):
        raise InvalidLastEventId(
            f"Last-Event-ID {value[:40]!r} is not an event id: "
            "expected a decimal event number such as '12'",
        )
    return int(value)


def parse_channel_cursor(value: str) -> tuple[int | None, int]:
    """A channel cursor as ``(epoch, number)``: ``{epoch}-{n}`` as the channel gives them.

    Plain digits (the cursors of before epochs) have no epoch: ``None``.
    InvalidLastEventId for anything else.
    """
    match = _CHANNEL_CURSOR.fullmatch(value)
    if match is None:
        raise InvalidLastEventId(
            f"Last-Event-ID {value[:40]!r} is not a channel cursor: give back the id of "
            "an event of this channel, such as '1733400000000-12'",
        )
    epoch = match[1]
    return (int(epoch) if epoch is not None else None), int(match[2])


def channel_start(after: str | None, epoch: int, last: int, first: int) -> tuple[int, str | None]:
    """Where a channel listener starts, and why it is reset there (``None``: it is not).

    The channel is in incarnation ``epoch``, its newest event is ``last`` and the
    oldest it keeps ``first``. Without a cursor the listener starts now. A cursor of
    another epoch (Redis lost its data; an in-process broker restarted; a plain
    number from before epochs) or older than the kept window cannot be resumed
    exactly: the listener starts now with a ``reset`` rather than skipping events
    silently. ``"0"`` means "from the start of what the channel holds". A cursor of
    this epoch beyond ``last`` was never given out: InvalidLastEventId.
    """
    if after is None:
        return last, None
    was, cursor = parse_channel_cursor(after)
    if was is None and cursor == 0:
        was = epoch
    if was != epoch:
        return last, "epoch"
    if cursor > last:
        raise InvalidLastEventId(
            f"Last-Event-ID {after!r} is beyond this channel's last event ({epoch}-{last})",
        )
    if cursor < first - 1:
        return last, "window"
    return cursor, None


@dataclass(frozen=True, slots=True)
class StreamInfo:
    stream_id: str
    owner: str
    last_seq: int
    finished: bool


@dataclass(frozen=True, slots=True)
class Orphan:
    """A running stream whose producer stopped renewing its lease (its replica died).

    The broker that hands one out has claimed it: it is now this replica's to
    end, and no other replica will get it. ``entries`` is everything appended
    before the producer vanished, so the partial answer can be stored whole.
    """

    stream_id: str
    owner: str
    entries: list[Entry]


class Subscription(ABC):
    """One listener's cursor on a stream or on a user's channel."""

    @property
    @abstractmethod
    def cursor(self) -> int:
        """The sequence number of the last entry handed out."""

    @abstractmethod
    async def next(self, deadline: float) -> list[Entry] | None:
        """Entries after the cursor, waiting until ``deadline`` (event loop time) for new ones.

        Returns ``[]`` when the deadline passed or :meth:`wake` was called (the
        caller writes a heartbeat or checks why it was woken) and ``None`` once
        the stream is finished and everything was handed out. A deadline, not a
        timeout, so that a listener can keep one heartbeat timer armed across
        many events instead of arming a new one per event.
        """

    @abstractmethod
    def wake(self) -> None:
        """Make a pending :meth:`next` return ``[]`` now (client gone, shutdown)."""

    @abstractmethod
    async def close(self) -> None:
        """Stop listening; the stream's listener count drops (grace period logic)."""


class ChannelSubscription(Subscription):
    """A listener's cursor on a user's channel, which a client sees as an opaque string."""

    @property
    @abstractmethod
    def position(self) -> str:
        """The cursor of the last entry handed out, as the client gives it back
        (``{epoch}-{n}``): what ``connected`` carries as its ``id``."""


class StreamLog(Protocol):
    """Answers as logs: what a producer writes and what its listeners read."""

    def admit(self, owner: str) -> None:
        """Refuse a new stream of ``owner`` that the broker has no room for.

        Asked by the use case before it records anything, so a refused question leaves
        nothing behind. The in-process broker refuses when answers still being written
        fill its memory budget (429 ``retained_share_full`` for the user's share, 503
        ``retained_bytes_full`` for the total); brokers with no budget of their own
        (Redis has ``maxmemory``) accept every stream.
        """
        return None

    @abstractmethod
    async def create(self, owner: str, stream_id: str | None = None) -> str:
        """Open a new running stream owned by ``owner`` and return its id.

        ``stream_id`` lets the caller record the id elsewhere first (the store).
        """

    @abstractmethod
    async def append(self, stream_id: str, event: str, data: str) -> int:
        """Append an event (``data`` is its JSON text) and return its sequence number.

        A backend may make the event visible to listeners a moment after it
        returns (Redis sends appends in batches), but always in order, and
        :meth:`finish` returns only once everything before it is visible.
        Errors of an earlier append may surface at a later one or at ``finish``.
        """

    @abstractmethod
    async def finish(self, stream_id: str, data: str) -> int:
        """Append the terminal ``end`` event; the stream is then retained, then expires."""

    @abstractmethod
    async def discard(self, stream_id: str) -> None:
        """Forget a stream created moments ago to which nothing was appended (the ask that
        created it failed to record its question): as if never created, nothing to end."""

    @abstractmethod
    async def info(self, stream_id: str, owner: str) -> StreamInfo:
        """The stream's state, or StreamNotFound (also for another owner) / StreamExpired."""

    @abstractmethod
    async def subscribe(self, stream_id: str, owner: str, after: int) -> Subscription:
        """Listen from ``after`` (0 = from the start); InvalidLastEventId if never reached."""


class UserChannel(Protocol):
    """Every stream of one user, as one log with its own numbering (``GET /v1/events``)."""

    @abstractmethod
    async def subscribe_channel(self, owner: str, after: str | None) -> ChannelSubscription:
        """Listen to every stream of ``owner``; ``after`` is an opaque channel cursor.

        Each entry's data is :func:`typewriter.events.channel_data` of the stream's
        event, so an appended event must be one of the answer's event kinds. A cursor
        that cannot be resumed exactly (:func:`channel_start`), and a listener that
        falls behind the kept window, get a ``reset`` entry instead of a gap.
        """


class Control(Protocol):
    """Stop: asked by any listener anywhere, awaited by the producer."""

    @abstractmethod
    async def cancel(self, stream_id: str, owner: str) -> None:
        """Ask the producer to stop, wherever it runs. Finished streams ignore it."""

    @abstractmethod
    async def wait_cancelled(self, stream_id: str) -> None:
        """Return once a cancel was asked for this stream (the producer races it)."""


class Presence(Protocol):
    """Whether anyone still listens to a stream: the grace period of an answer."""

    @abstractmethod
    async def wait_abandoned(self, stream_id: str, grace: float) -> None:
        """Return once the stream has had no listener for ``grace`` seconds in a row."""


class Replicas(Protocol):
    """What a broker seen by several replicas adds: leases, and the streams of dead ones.

    ``shared`` brokers are seen by several replicas: their producers hold leases
    and some replica must end the streams of one that died (:meth:`claim_orphans`).
    """

    @property
    def shared(self) -> bool: ...

    @abstractmethod
    async def claim_orphans(self) -> list[Orphan]:
        """Claim running streams whose producer's lease lapsed."""

    @abstractmethod
    async def live(self, stream_ids: list[str]) -> set[str]:
        """Of these streams, the ones a producer somewhere may still be writing."""

    def loss_settled(self) -> bool:
        """True once per loss of the broker's data (Redis flushed or restarted empty), when
        producers and mirrors have had the time to restore what they could: the answers
        still marked streaming whose stream is not :meth:`live` then ended for good."""
        return False


class Lifecycle(Protocol):
    """Start, health, shutdown: what the composition root and ``/readyz`` ask."""

    @abstractmethod
    def describe(self) -> str:
        """Where the streams are, for the start-up line (never with a password)."""

    @abstractmethod
    async def start(self) -> None:
        """Connect and start background work; brokers also start lazily on first use."""

    @abstractmethod
    async def ping(self) -> bool:
        """True when the backend is reachable (``/readyz``)."""

    @abstractmethod
    async def close(self) -> None:
        """Release timers and connections."""


class Broker(StreamLog, UserChannel, Control, Presence, Replicas, Lifecycle):
    """All of the above: what a backend implements and the composition root holds.

    Everyone else depends on the one protocol it uses (Centrifuge keeps its
    ``Broker`` apart from its ``PresenceManager`` the same way). The defaults
    are those of a broker in one process: nothing to start, no other replicas.
    """

    shared = False

    def describe(self) -> str:
        return "memory"

    async def start(self) -> None:
        return None

    async def claim_orphans(self) -> list[Orphan]:
        return []

    async def live(self, stream_ids: list[str]) -> set[str]:
        return set()
