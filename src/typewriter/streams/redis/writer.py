"""The replica's one writer: every append of every stream it produces, batched.

A round trip per token and per generation was the replica's main cost (half
its CPU at 200 streams × 20 tokens/s); one pipeline carries what all
generations appended meanwhile, and the deltas in it are one call of the
:data:`~.keys.APPEND_MANY` script (a call per delta cost more than the rest of
the delta's path together: packing, parsing, the script's own start); each
``error`` and ``end`` is one :data:`~.keys.APPEND`. Both are idempotent by
number, so a batch whose reply was lost is sent again.
A stream Redis lost while it runs is written back from what Redis had confirmed
(:mod:`.restore`) and the refused appends are sent again, in order.

When Redis is full it refuses a delta: the stream's later deltas are dropped
(they would leave a gap), the producer hears :class:`~typewriter.errors.BrokerFull`
at its next append, and its ``error`` and ``end`` follow the last event Redis
holds, written with the script that Redis runs even when full (:mod:`.full`).
The answer ends once, promptly, with exactly what its listeners saw.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, ResponseError

from typewriter.errors import BrokerFull, BrokerUnavailable, StreamTakenOver
from typewriter.streams.base import TERMINAL_EVENT, Entry, encode_entry
from typewriter.streams.redis.background import Background
from typewriter.streams.redis.connection import (
    FAILED,
    FULL_MESSAGE,
    UNREACHABLE,
    is_full,
    or_unavailable,
    retrieve,
)
from typewriter.streams.redis.followers import Mirror, StreamFollowers
from typewriter.streams.redis.full import END_ANYWAY, ENDING_EVENTS
from typewriter.streams.redis.keys import APPEND_MANY, RUNNING_TTL, Keys
from typewriter.streams.redis.restore import Restorer

__all__ = ["Writer"]

log = logging.getLogger(__name__)

_WRITE_BATCH = 512  # appends per round trip, at most
_QUEUE_LIMIT = 4096  # appends waiting for Redis before producers wait too


class _Produced:
    """A stream this replica writes: the number of its last queued event.

    ``broken`` is set once a write failed for good: later writes would leave a gap,
    so they fail the same way, and the stream is left to its lease. ``full`` is set
    once Redis refused a delta for memory: only the ending may follow, numbered
    after ``written`` (the last event Redis holds); writes queued before it belong
    before the refusal (an earlier ``refusals`` count) and are dropped.
    """

    __slots__ = (
        "stream_id",
        "owner",
        "queued",
        "written",
        "broken",
        "full",
        "refusals",
        "log",
        "keys",
        "many_keys",
        "confirmed",
    )

    def __init__(
        self,
        stream_id: str,
        owner: str,
        queued: int,
        keys: Keys,
        log: Mirror | None,
        confirmed: list[Entry] | None,
    ) -> None:
        self.stream_id = stream_id
        self.owner = owner
        self.queued = queued
        self.written = queued
        self.broken: Exception | None = None
        self.full: BrokerFull | None = None
        self.refusals = 0  # deltas Redis refused for memory: writes queued before are void
        self.log = log  # what was written, for this replica's own listeners
        # The scripts' keys, made once rather than per token.
        self.keys = keys.append(stream_id, owner)
        self.many_keys = keys.append_many(stream_id, owner)
        # Every event Redis confirmed, 1..N, to write back should Redis lose them
        # (None: not known from the start, as for a claimed stream; it cannot be).
        self.confirmed = confirmed


class _Write:
    """One queued append, and who waits for it: nobody, for most deltas (a future made
    per delta cost as much as its packing)."""

    __slots__ = ("produced", "entry", "done", "ending", "finishing", "refusals")

    def __init__(self, produced: _Produced, entry: Entry, ending: bool, finishing: bool) -> None:
        self.produced = produced
        self.entry = entry
        self.done: asyncio.Future[int] | None = None
        self.ending = ending  # written even when Redis is full, by its own script call
        self.finishing = finishing
        self.refusals = produced.refusals

    def settle(self, result: int | BaseException) -> None:
        done = self.done
        if done is not None and not done.done():
            if isinstance(result, BaseException):
                done.set_exception(result)
            else:
                done.set_result(result)


class _Call:
    """One script call of a batch: the deltas of several streams (``groups``, one per
    stream, consecutive numbers each) or one ending (``groups`` holds just it)."""

    __slots__ = ("groups", "args", "ending")

    def __init__(self, groups: list[list[_Write]], args: list[Any], ending: bool) -> None:
        self.groups = groups
        self.args = args
        self.ending = ending


class Writer:
    """The streams this replica produces, the appends queued for them, and the task that
    sends them."""

    def __init__(
        self,
        redis: aioredis.Redis,
        background: Background,
        keys: Keys,
        followers: StreamFollowers,
        *,
        token: str,
        retention: float,
        tombstone_ttl: float,
        channel_window: int,
        lease_ms: int,
    ) -> None:
        self._redis = redis
        self._background = background
        self._keys = keys
        self._followers = followers
        self._token = token
        # Seconds a finished stream is kept, then its tombstone: the same for every append.
        self._keep = int(retention) or 1
        self._tombstone_keep = self._keep + int(tombstone_ttl)
        self._channel_window = channel_window
        self._lease_ms = lease_ms
        self._many_sha = redis.register_script(APPEND_MANY).sha
        self._end_sha = redis.register_script(END_ANYWAY).sha
        self._produced: dict[str, _Produced] = {}
        self._queue: list[_Write] = []
        self._queued = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._restorer = Restorer(redis, keys, token=token, lease_ms=lease_ms)
        self._restore_all = False

    async def load_script(self) -> None:
        await or_unavailable(self._redis.script_load(APPEND_MANY))
        try:
            await or_unavailable(self._redis.script_load(END_ANYWAY))
        except ResponseError as exc:  # Redis 6 reads the flags line as bad Lua
            raise BrokerUnavailable(
                f"Redis refused a script flagged allow-oom ({exc}); typewriter needs "
                "Redis 7.0 or later"
            ) from None

    def produce(
        self,
        stream_id: str,
        owner: str,
        last: int,
        log: Mirror | None = None,
        confirmed: list[Entry] | None = None,
    ) -> None:
        """Write this stream from now on, after event ``last``; ``log`` gets what was written.

        ``confirmed`` is the stream's events so far (a new stream has none), kept so that
        the stream can be written back should Redis lose it.
        """
        if confirmed is None and last == 0:
            confirmed = []
        self._produced[stream_id] = _Produced(stream_id, owner, last, self._keys, log, confirmed)

    def forget(self, stream_id: str) -> None:
        self._produced.pop(stream_id, None)

    def produces(self, stream_id: str) -> bool:
        """Whether this replica writes the stream and still holds its lease."""
        produced = self._produced.get(stream_id)
        return produced is not None and produced.broken is None

    def held(self) -> list[str]:
        """The streams whose leases to renew: a stream whose writes failed for good is left
        to lapse and be ended by whichever replica claims it."""
        return [s for s, p in self._produced.items() if p.broken is None]

    def wake(self) -> None:
        """The broker closes: the writer sends what is queued, then stops."""
        self._queued.set()

    def epoch_changed(self, epoch: int) -> None:
        """Redis lost its data: write back every stream produced here before the next batch,
        even if no producer appends (a model slow to answer), so that listeners elsewhere
        and reconnects find them."""
        if self._produced:
            self._restore_all = True
            self._run()
            self._queued.set()

    def _run(self) -> None:
        if self._task is None or self._task.done():
            self._task = self._background.spawn(self._write_queued())

    async def append(self, stream_id: str, event: str, data: str, *, finishing: bool) -> int:
        """Queue the write for the replica's one writer; wait only when it matters.

        Numbered here, in call order, so a stream's events keep their order in
        whichever batch they travel. A delta does not wait for Redis: the model
        goes on while the writer sends what queued up, many events per round
        trip (a listener sees an event once it is in Redis, so nothing is shown
        that Redis does not hold). The ``end`` waits, so does every append once
        the queue is long (Redis slow or away: the model is held back, memory is
        bounded). Waits are shielded, so cancelling the producer (Stop) never
        lands inside a Redis command.
        """
        produced = self._produced.get(stream_id)
        if produced is None:
            raise StreamTakenOver(f"stream {stream_id!r} is not produced here")
        ending = finishing or event in ENDING_EVENTS
        if produced.full is not None and not ending:
            raise produced.full
        if produced.broken is not None:
            raise produced.broken
        produced.queued += 1
        seq = produced.queued
        write = _Write(produced, encode_entry(seq, event, data), ending, finishing)
        self._queue.append(write)
        self._run()
        self._queued.set()
        if finishing or len(self._queue) > _QUEUE_LIMIT:
            # Made now, before the writer can run: it settles the write once sent.
            done = write.done = asyncio.get_running_loop().create_future()
            done.add_done_callback(retrieve)
            return await asyncio.shield(done)
        return seq

    async def _write_queued(self) -> None:
        """Every queued append, in batches of one round trip each."""
        while not self._background.closing.is_set() or self._queue:
            if self._restore_all:
                self._restore_all = False
                await self._restore_produced()
                continue
            if not self._queue:
                self._queued.clear()
                await self._queued.wait()
                continue
            batch, self._queue = self._queue[:_WRITE_BATCH], self._queue[_WRITE_BATCH:]
            await self._write_batch(batch)

    def _calls(self, batch: list[_Write]) -> list[_Call]:
        """The batch as script calls, each stream's events in order: the deltas in one
        call of :data:`~.keys.APPEND_MANY` (a stream's ending, when there is one, goes
        after the call holding its earlier deltas), each ending in a call of its own."""
        calls: list[_Call] = []
        groups: dict[_Produced, list[_Write]] = {}

        def deltas() -> None:
            if not groups:
                return
            args: list[Any] = [self._token, RUNNING_TTL, self._channel_window]
            keys: list[str] = [self._keys.epoch]
            for produced, group in groups.items():
                keys += produced.many_keys
                args += (produced.stream_id, group[0].entry[0], len(group))
                for write in group:
                    entry = write.entry
                    args += (entry[1], entry[2], entry[3])
            calls.append(_Call(list(groups.values()), [len(keys), *keys, *args], False))
            groups.clear()

        for write in batch:
            produced = write.produced
            group = groups.get(produced)
            if write.ending:
                if group is not None:
                    deltas()
                calls.append(_Call([[write]], self._ending_args(write), True))
            elif group is None:
                groups[produced] = [write]
            elif group[-1].entry[0] + 1 == write.entry[0]:
                group.append(write)
            else:  # not consecutive (not expected): the group so far goes first
                deltas()
                groups[produced] = [write]
        deltas()
        return calls

    def _ending_args(self, write: _Write) -> list[Any]:
        produced = write.produced
        seq, event, data, wire = write.entry
        return [
            len(produced.keys),
            *produced.keys,
            self._token,
            seq,
            event,
            data,
            wire,
            1 if write.finishing else 0,
            self._keep,
            RUNNING_TTL,
            self._tombstone_keep,
            produced.stream_id,
            self._channel_window,
        ]

    async def _write_batch(self, batch: list[_Write]) -> None:
        """Send one batch, retrying it whole through an outage (the scripts are idempotent)."""
        batch = [write for write in batch if self._current(write)]
        if not batch:
            return
        calls = self._calls(batch)
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self._lease_ms / 1000
        delay = 0.05
        while True:
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for call in calls:
                        sha = self._end_sha if call.ending else self._many_sha
                        pipe.execute_command("EVALSHA", sha, *call.args)
                    results: list[Any] = await pipe.execute(raise_on_error=False)
                if any(isinstance(r, NoScriptError) for r in results):
                    # Redis restarted: load them again
                    await self._redis.script_load(APPEND_MANY)
                    await self._redis.script_load(END_ANYWAY)
                    continue
                break
            except UNREACHABLE as exc:
                give = self._lease_ms / 1000
                if loop.time() + delay > give_up:
                    log.warning("appending to Redis given up after %.0f s: %s", give, exc)
                    failure = BrokerUnavailable(
                        f"the stream broker (Redis) has been unreachable for {give:.0f} s"
                    )
                    for write in batch:
                        self._fail(write, failure)
                    return
                log.warning("appending to Redis failed (%s); retrying in %.2f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
        grown: dict[str, Mirror] = {}
        lost: dict[str, list[_Write]] = {}
        for call, result in zip(calls, results, strict=True):
            if call.ending or isinstance(result, BaseException):
                for group in call.groups:  # the one ending, or every delta of a refused call
                    for write in group:
                        self._settle(write, result, lost, grown)
                continue
            for group, written in zip(call.groups, result, strict=True):
                if isinstance(written, bytes):  # this stream's error; the others went on
                    error = ResponseError(written.decode())
                    for write in group:
                        self._settle(write, error, lost, grown)
                elif group[0].produced.stream_id in lost or not all(map(self._current, group)):
                    for write in group:
                        self._settle(write, write.entry[0], lost, grown)
                else:
                    self._confirm(group, grown)
        for own in grown.values():
            own.notify()
        if lost:
            await self._restore_lost(lost)

    def _confirm(self, group: list[_Write], grown: dict[str, Mirror]) -> None:
        """Redis holds these events of one stream (consecutive, still current): its own
        listeners here may read them."""
        produced = group[0].produced
        entries = [write.entry for write in group]
        if produced.confirmed is not None:
            produced.confirmed += entries
        last = entries[-1]
        produced.written = max(produced.written, last[0])
        own = produced.log
        if own is not None and not own.finished:
            own.entries += entries
            if last[1] == TERMINAL_EVENT:
                own.finished = True
                if own.subscribers == 0:
                    self._followers.drop(produced.stream_id, own)
            grown[produced.stream_id] = own
        for write in group:
            if write.done is not None:
                write.settle(write.entry[0])

    def _settle(
        self,
        write: _Write,
        result: int | BaseException,
        lost: dict[str, list[_Write]],
        grown: dict[str, Mirror],
    ) -> None:
        """One write's outcome, ``result`` its number or what Redis answered instead."""
        stream_id = write.produced.stream_id
        again = lost.get(stream_id)
        if again is not None:  # after the loss: refused too, sent again once restored
            again.append(write)
            return
        if not self._current(write):
            return  # after a delta Redis refused in this very batch: a gap, dropped
        if is_full(result):
            self._refuse(write)
            return
        if isinstance(result, BaseException):
            message = str(result)
            if message.startswith("TWGONE") and write.produced.confirmed is not None:
                lost[stream_id] = [write]  # Redis lost it: written back below
            elif message.startswith(("TWTAKEN", "TWGONE", "TWGAP")):
                self._fail(write, StreamTakenOver(f"stream {stream_id!r}: {message}"))
            else:
                log.warning("Redis refused an append to %s: %s", stream_id, message)
                self._fail(write, BrokerUnavailable("the stream broker (Redis) refused an event"))
            return
        self._confirm([write], grown)

    async def _restore_lost(self, lost: dict[str, list[_Write]]) -> None:
        """Write back the streams Redis lost, then queue their refused appends first."""
        again: list[_Write] = []
        for stream_id, writes in lost.items():
            produced = writes[0].produced
            try:
                await self._restore(stream_id, produced)
            except StreamTakenOver as exc:
                for write in writes:
                    self._fail(write, exc)
                continue
            except FAILED as exc:  # the next batch meets the outage and waits it out
                log.warning("restoring stream %s failed (%s); trying again", stream_id, exc)
                await asyncio.sleep(0.05)
            again += writes
        self._queue[:0] = again

    async def _restore(self, stream_id: str, produced: _Produced) -> None:
        confirmed = produced.confirmed
        assert confirmed is not None
        if await self._restorer.restore(stream_id, produced.owner, confirmed):
            log.warning(
                "stream %s was lost by Redis; written back (%d events) and going on",
                stream_id,
                len(confirmed),
            )

    async def _restore_produced(self) -> None:
        """After a new epoch: write back every stream produced here that Redis lost."""
        for stream_id, produced in list(self._produced.items()):
            if produced.broken is not None or produced.confirmed is None:
                continue
            try:
                await self._restore(stream_id, produced)
            except StreamTakenOver as exc:
                self._break(stream_id, produced, exc)
            except FAILED as exc:
                log.warning("restoring stream %s failed (%s)", stream_id, exc)
                self._restore_all = True  # the next turn of the loop tries again
                await asyncio.sleep(0.1)
                return

    def _current(self, write: _Write) -> bool:
        """Whether the write still counts; one queued before Redis refused an earlier event
        of its stream fails as that one did."""
        produced = write.produced
        if write.refusals == produced.refusals:
            return True
        assert produced.full is not None  # only a refusal voids queued writes
        write.settle(produced.full)
        return False

    def _refuse(self, write: _Write) -> None:
        """Redis is full: the stream's next events are its ending, right after the last one
        Redis holds; the writes queued meanwhile are dropped."""
        produced = write.produced
        full = BrokerFull(f"{FULL_MESSAGE}; the answer ends here", produced.written)
        if produced.full is None:
            log.warning(
                "Redis is full (maxmemory): stream %s ends after event %d",
                produced.stream_id,
                produced.written,
            )
        produced.full = full
        produced.refusals += 1
        produced.queued = produced.written
        write.settle(full)

    def _fail(self, write: _Write, error: Exception) -> None:
        self._break(write.produced.stream_id, write.produced, error)
        write.settle(error)

    def _break(self, stream_id: str, produced: _Produced, error: Exception) -> None:
        produced.broken = error
        own = produced.log
        if own is not None and not own.finished:
            # Listeners here end their responses (no ``end``) and resume from Redis,
            # where whoever ends the stream now writes the rest.
            own.finished = True
            own.notify()
            self._followers.drop(stream_id, own)
