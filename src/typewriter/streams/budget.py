"""The in-process broker's memory budget: what its streams hold, and which to drop first.

Retained streams would otherwise hold memory bounded only by time: at the default
limits one user could pin gigabytes for the retention period. The budget counts
the bytes each stream and each user's channel keep and, past a limit, names the
finished stream to drop: the user's own oldest first while the user is over
their share, then the oldest of anyone while the total is over. A dropped stream
is gone exactly as an expired one is (410 ``stream_expired``).

How bytes are counted. Counting must cost next to nothing per event, so nothing
walks objects: each event is charged a constant measured once (with
``tracemalloc``, CPython 3.11, 64-bit) plus the lengths it carries.

* An event in a stream's log, :data:`ENTRY_OVERHEAD` + ``len(wire)``: the entry
  tuple, its list slot and the ``bytes`` header of its encoding; and its number
  (:data:`INT_BYTES`) past the first 256, which CPython keeps ready.
* Its data text, :func:`text_cost` (``sys.getsizeof``, rounded up to the
  allocator's 8 bytes), charged to its stream. The user's channel shares these
  texts; when a stream is dropped while some of its events are still in the
  channel's window, its texts are charged to the channel until the window has
  moved past its last event (errs high: by the part that already left).
* An event in the user's channel, :data:`CHANNEL_ENTRY_OVERHEAD`: the channel's
  tuple, its cursor and its deque slot; nothing more once the window is full
  (each new entry takes the place of the oldest).
* A stream itself, :data:`STREAM_OVERHEAD`: the stream object with its events
  and sets, its retention timer, its dict entries here and in the broker.

``tests/streams/test_budget.py`` holds these constants to within 10 % of what
``tracemalloc`` sees for real answers. Not counted: tombstones of dropped streams
(a stream id and a time each, for a day) and the empty record kept per user ever
seen, both far smaller than one answer.

Running streams are never dropped: their text is being shown. What they and the
channels hold is *pinned*; only finished streams are *droppable*. Where pinned
bytes alone fill a limit, :meth:`RetainedBudget.admit` refuses a user's new
answer and :meth:`RetainedBudget.take` refuses a running answer's next piece of
text (the generation ends it ``length``), so the limits hold to within the few
small events that frame an answer (start, error, end), which are always kept.
"""

from __future__ import annotations

import sys
from collections import OrderedDict

from typewriter.errors import RetainedBytesFull, TooManyRequests

__all__ = [
    "CHANNEL_ENTRY_OVERHEAD",
    "ENTRY_OVERHEAD",
    "INT_BYTES",
    "SMALL_INT",
    "STREAM_OVERHEAD",
    "Account",
    "OverBudget",
    "RetainedBudget",
    "text_cost",
]

ENTRY_OVERHEAD = 113
"""Bytes of one log entry beyond its encoding's length and its number (tuple 72, list
slot 8, bytes header 33)."""
INT_BYTES = 32
"""An event's number, once past the integers CPython keeps ready (:data:`SMALL_INT`)."""
SMALL_INT = 256
CHANNEL_ENTRY_OVERHEAD = 120
"""Bytes of one channel entry (tuple 80, cursor 32, deque slot 8); its text is shared."""
STREAM_OVERHEAD = 3800
"""Bytes of a stream with no event: the object, its three asyncio events, its listener
set, its retention timer, its entries in the broker's and the budget's dicts."""

RETRY_AFTER = 2.0
"""Seconds a refused ask is told to wait: until an answer of its user ends, at best."""


_sizeof = sys.getsizeof


def text_cost(text: str) -> int:
    """Bytes a ``str`` takes, as the allocator hands them out (multiples of 8)."""
    return (_sizeof(text) + 7) & ~7


class OverBudget(Exception):
    """The next piece of a running answer does not fit: running answers alone fill the
    user's share or the total. Never reaches a client: the generation ends the answer
    ``length`` with the text shown so far."""


class _Share:
    """One user's bytes: ``total`` of which ``pinned`` cannot be dropped, and the user's
    finished streams, oldest first."""

    __slots__ = ("total", "pinned", "finished")

    def __init__(self) -> None:
        self.total = 0
        self.pinned = 0
        self.finished: OrderedDict[str, Account] = OrderedDict()


class Account:
    """What one stream or one user's channel holds; ``pinned`` until the stream finishes."""

    __slots__ = ("key", "share", "bytes", "pinned")

    def __init__(self, key: str, share: _Share) -> None:
        self.key = key
        self.share = share
        self.bytes = 0
        self.pinned = True


class RetainedBudget:
    """Bytes held per user and in total, against ``limit`` and each user's ``share``.

    Every operation is O(1): finished streams sit in two insertion-ordered dicts
    (the user's and everyone's), so the oldest is the first of either, and a stream
    dropped by time or by budget leaves both by key.
    """

    __slots__ = ("limit", "share", "total", "pinned", "dropped", "_shares", "_finished")

    def __init__(self, limit: int, share: int) -> None:
        self.limit = limit
        self.share = min(share, limit)
        self.total = 0
        self.pinned = 0
        self.dropped = 0  # streams dropped for the budget (not for time), for the metrics
        self._shares: dict[str, _Share] = {}
        self._finished: OrderedDict[str, Account] = OrderedDict()

    def _share_of(self, owner: str) -> _Share:
        share = self._shares.get(owner)
        if share is None:
            share = self._shares[owner] = _Share()
        return share

    def user_bytes(self, owner: str) -> int:
        share = self._shares.get(owner)
        return share.total if share is not None else 0

    def open(self, key: str, owner: str, bytes_: int = 0) -> Account:
        """A new pinned account (a running stream, a user's channel) holding ``bytes_``."""
        account = Account(key, self._share_of(owner))
        self.charge(account, bytes_)
        return account

    def charge(self, account: Account, bytes_: int) -> None:
        """``bytes_`` more (or fewer, when negative) held by ``account``."""
        account.bytes += bytes_
        share = account.share
        share.total += bytes_
        self.total += bytes_
        if account.pinned:
            share.pinned += bytes_
            self.pinned += bytes_

    # The token path: one call per event appended.

    def take(
        self, stream: Account, channel: Account, to_stream: int, to_channel: int, refusable: bool
    ) -> bool:
        """Count an event appended to a running stream: ``to_stream`` bytes in its log
        (entry and data text), ``to_channel`` for its entry in its user's channel (0 once
        the window is full: the new entry takes the place of the oldest).

        A ``refusable`` event (text) is not counted, and False returned, when pinned bytes
        leave no room for it even once every finished stream is dropped.
        """
        added = to_stream + to_channel
        share = stream.share
        if refusable and (share.pinned + added > self.share or self.pinned + added > self.limit):
            return False
        stream.bytes += to_stream
        channel.bytes += to_channel
        share.total += added
        share.pinned += added
        self.total += added
        self.pinned += added
        return True

    def oldest_finished(self, owner: str) -> str | None:
        share = self._shares.get(owner)
        return next(iter(share.finished)) if share is not None and share.finished else None

    def fits(self, owner: str, bytes_: int) -> bool:
        """Whether ``bytes_`` more pinned bytes of ``owner`` fit, once finished streams are
        dropped to make room."""
        share = self._shares.get(owner)
        pinned = share.pinned if share is not None else 0
        return pinned + bytes_ <= self.share and self.pinned + bytes_ <= self.limit

    def finish(self, account: Account) -> None:
        """The stream ended: its bytes may now be dropped, after those of older streams."""
        if not account.pinned:
            return
        account.pinned = False
        share = account.share
        share.pinned -= account.bytes
        self.pinned -= account.bytes
        share.finished[account.key] = account
        self._finished[account.key] = account

    def release(self, account: Account) -> None:
        """The stream is gone (expired or dropped): nothing of it is held any more."""
        self.charge(account, -account.bytes)
        account.share.finished.pop(account.key, None)
        self._finished.pop(account.key, None)

    def victim(self, owner: str) -> str | None:
        """The finished stream to drop next so that ``owner`` and the total are within their
        limits, or None when they are (or nothing finished is left to drop)."""
        share = self._shares.get(owner)
        if share is not None and share.total > self.share and share.finished:
            return next(iter(share.finished))
        if self.total > self.limit and self._finished:
            return next(iter(self._finished))
        return None

    def admit(self, owner: str) -> None:
        """Refuse a new answer of ``owner`` when pinned bytes leave no room for one."""
        if self.fits(owner, STREAM_OVERHEAD):
            return
        share = self._shares.get(owner)
        pinned = share.pinned if share is not None else 0
        if pinned + STREAM_OVERHEAD > self.share:
            raise TooManyRequests(
                f"your answers still being written hold {_mib(pinned)} of the "
                f"{_mib(self.share)} one user may keep (max_retained_bytes_per_user); wait "
                "for one to end or stop one with POST /v1/streams/{stream_id}/cancel",
                code="retained_share_full",
                retry_after=RETRY_AFTER,
            )
        raise RetainedBytesFull(
            f"answers still being written hold {_mib(self.pinned)} of the "
            f"{_mib(self.limit)} this server keeps for streams (max_retained_bytes); "
            "ask again in a moment",
            retry_after=RETRY_AFTER,
        )


def _mib(bytes_: int) -> str:
    return f"{bytes_ / 1048576:.1f} MiB"
