"""The replica's one writer: every append of every stream it produces, batched.

A round trip per token and per generation was the replica's main cost (half
its CPU at 200 streams × 20 tokens/s); one pipeline carries what all
generations appended meanwhile. Each append is the :data:`~.keys.APPEND`
script, idempotent by number, so a batch whose reply was lost is sent again.
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
from typewriter.streams.redis.keys import APPEND, RUNNING_TTL, Keys
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
        "owner",
        "queued",
        "written",
        "broken",
        "full",
        "refusals",
        "log",
        "keys",
        "confirmed",
    )

    def __init__(
        self,
        owner: str,
        queued: int,
        keys: list[str],
        log: Mirror | None,
        confirmed: list[Entry] | None,
    ) -> None:
        self.owner = owner
        self.queued = queued
        self.written = queued
        self.broken: Exception | None = None
        self.full: BrokerFull | None = None
        self.refusals = 0  # deltas Redis refused for memory: writes queued before are void
        self.log = log  # what was written, for this replica's own listeners
        self.keys = keys  # the append script's keys, made once rather than per token
        # Every event Redis confirmed, 1..N, to write back should Redis lose them
        # (None: not known from the start, as for a claimed stream; it cannot be).
        self.confirmed = confirmed


class _Write:
    """One queued append: the script's arguments (its keys are the stream's), and who waits."""

    __slots__ = ("stream_id", "produced", "entry", "args", "done", "ending", "refusals")

    def __init__(
        self,
        stream_id: str,
        produced: _Produced,
        entry: Entry,
        args: list[str | int | bytes],
        done: asyncio.Future[int],
        ending: bool,
    ) -> None:
        self.stream_id = stream_id
        self.produced = produced
        self.entry = entry
        self.args = args
        self.done = done
        self.ending = ending  # written even when Redis is full
        self.refusals = produced.refusals


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
        self._append_sha = redis.register_script(APPEND).sha
        self._end_sha = redis.register_script(END_ANYWAY).sha
        self._produced: dict[str, _Produced] = {}
        self._queue: list[_Write] = []
        self._queued = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._restorer = Restorer(redis, keys, token=token, lease_ms=lease_ms)
        self._restore_all = False

    async def load_script(self) -> None:
        await or_unavailable(self._redis.script_load(APPEND))
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
        self._produced[stream_id] = _Produced(
            owner, last, self._keys.append(stream_id, owner), log, confirmed
        )

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
        entry = encode_entry(seq, event, data)
        write = _Write(
            stream_id,
            produced,
            entry,
            [
                self._token,
                seq,
                event,
                data,
                entry[3],
                1 if finishing else 0,
                self._keep,
                RUNNING_TTL,
                self._tombstone_keep,
                stream_id,
                self._channel_window,
            ],
            asyncio.get_running_loop().create_future(),
            ending,
        )
        write.done.add_done_callback(retrieve)
        self._queue.append(write)
        self._run()
        self._queued.set()
        if finishing or len(self._queue) > _QUEUE_LIMIT:
            return await asyncio.shield(write.done)
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

    async def _write_batch(self, batch: list[_Write]) -> None:
        """Send one batch, retrying it whole through an outage (the script is idempotent)."""
        batch = [write for write in batch if self._current(write)]
        if not batch:
            return
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self._lease_ms / 1000
        delay = 0.05
        while True:
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for write in batch:
                        keys = write.produced.keys
                        sha = self._end_sha if write.ending else self._append_sha
                        pipe.evalsha(sha, len(keys), *keys, *write.args)
                    results: list[Any] = await pipe.execute(raise_on_error=False)
                if any(isinstance(r, NoScriptError) for r in results):
                    await self._redis.script_load(APPEND)  # Redis restarted: load them again
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
        for write, result in zip(batch, results, strict=True):
            again = lost.get(write.stream_id)
            if again is not None:  # after the loss: refused too, sent again once restored
                again.append(write)
                continue
            if not self._current(write):
                continue  # after a delta Redis refused in this very batch: a gap, dropped
            if is_full(result):
                self._refuse(write)
                continue
            if isinstance(result, ResponseError):
                message = str(result)
                if message.startswith("TWGONE") and write.produced.confirmed is not None:
                    lost[write.stream_id] = [write]  # Redis lost it: written back below
                elif message.startswith(("TWTAKEN", "TWGONE", "TWGAP")):
                    self._fail(write, StreamTakenOver(f"stream {write.stream_id!r}: {message}"))
                else:
                    log.warning("Redis refused an append to %s: %s", write.stream_id, message)
                    self._fail(
                        write, BrokerUnavailable("the stream broker (Redis) refused an event")
                    )
                continue
            seq = write.entry[0]
            if write.produced.confirmed is not None:
                write.produced.confirmed.append(write.entry)
            write.produced.written = max(write.produced.written, seq)
            own = write.produced.log
            if own is not None and not own.finished:
                own.entries.append(write.entry)
                if write.entry[1] == TERMINAL_EVENT:
                    own.finished = True
                    if own.subscribers == 0:
                        self._followers.drop(write.stream_id, own)
                grown[write.stream_id] = own
            if not write.done.done():
                write.done.set_result(seq)
        for own in grown.values():
            own.notify()
        if lost:
            await self._restore_lost(lost)

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
        if not write.done.done():
            assert produced.full is not None  # only a refusal voids queued writes
            write.done.set_exception(produced.full)
        return False

    def _refuse(self, write: _Write) -> None:
        """Redis is full: the stream's next events are its ending, right after the last one
        Redis holds; the writes queued meanwhile are dropped."""
        produced = write.produced
        full = BrokerFull(f"{FULL_MESSAGE}; the answer ends here", produced.written)
        if produced.full is None:
            log.warning(
                "Redis is full (maxmemory): stream %s ends after event %d",
                write.stream_id,
                produced.written,
            )
        produced.full = full
        produced.refusals += 1
        produced.queued = produced.written
        if not write.done.done():
            write.done.set_exception(full)

    def _fail(self, write: _Write, error: Exception) -> None:
        self._break(write.stream_id, write.produced, error)
        if not write.done.done():
            write.done.set_exception(error)

    def _break(self, stream_id: str, produced: _Produced, error: Exception) -> None:
        produced.broken = error
        own = produced.log
        if own is not None and not own.finished:
            # Listeners here end their responses (no ``end``) and resume from Redis,
            # where whoever ends the stream now writes the rest.
            own.finished = True
            own.notify()
            self._followers.drop(stream_id, own)
