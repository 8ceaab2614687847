"""Streams in Redis, so that any replica can replay, follow, stop and finish any answer.

Keys (``tw`` is the prefix):

- ``tw:s:{id}`` the answer's Redis stream, entry ids ``0-{seq}`` so that
  ``Last-Event-ID`` maps straight onto ``XREAD``; each entry carries its SSE
  encoding (``w``) so no replica encodes it again.
- ``tw:m:{id}`` a hash: owner, last seq, finished, and the token of the replica
  producing it. ``tw:t:{id}`` a tombstone that outlives both, so an expired
  stream answers 410, not 404.
- ``tw:u:{owner}`` / ``tw:un:{owner}`` each user's channel and its counter.
- ``tw:running`` a sorted set: running stream → lease deadline (Redis clock,
  ms). The producing replica renews the leases of its streams; when it dies
  they lapse, and another replica claims and ends the stream ``interrupted``.
- ``tw:r:{token}`` one key per live replica (same heartbeat), and
  ``tw:l:{id}`` a hash of listener counts per replica, so the grace period
  ignores listeners that were on a replica which died.
- ``tw:c:{id}`` a cancel flag, besides the ``tw:cancel:all`` pub/sub message:
  the message makes Stop prompt, the flag makes it certain (a message sent
  while a replica was reconnecting is gone, the flag is read every poll).

Appends are one Lua script: the entry, the stream's last number, the channel
entry and (at the end) "finished", atomically, and only while this replica is
still the producer. The script is idempotent by sequence number, so an append
whose reply was lost is retried safely with backoff until Redis is back.

A replica does not read Redis once per listener: listeners of an answer this
replica generates read what its writer confirmed, and elsewhere the first local
listener of a stream (or of a user's channel) starts one follower (a blocking
``XREAD`` loop) that mirrors it into a :class:`~typewriter.streams.local.LocalLog`,
and every local listener reads that log from its own cursor, as with the memory
broker. Each follower holds one connection of its own pool while it blocks, so
a replica following N streams holds about N connections to Redis (Redis's
default limit is 10,000).

redis-py's asyncio client can swallow the cancellation of a task that is inside
a command (measured: about one cancel in three lost on a loop of ``INCR``), so
no task that others cancel awaits Redis directly: producers await a shielded
write, waits of a generation await local events, and loops stop on a flag.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.connection import BlockingConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from typewriter.errors import (
    BrokerUnavailable,
    InvalidLastEventId,
    StreamExpired,
    StreamNotFound,
    StreamTakenOver,
)
from typewriter.ids import new_id
from typewriter.streams.base import (
    TERMINAL_EVENT,
    Broker,
    Entry,
    Orphan,
    StreamInfo,
    Subscription,
    encode_entry,
    parse_cursor,
)
from typewriter.streams.local import LocalChannel, LocalLog, LocalSubscription

__all__ = ["RedisBroker"]

log = logging.getLogger(__name__)
T = TypeVar("T")

_NOW_MS = "local t = redis.call('TIME') local now = t[1] * 1000 + math.floor(t[2] / 1000)"

_CREATE = f"""
{_NOW_MS}
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'finished', 0, 'last', 0, 'producer', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[4])
return now
"""

# KEYS: stream, meta, channel, channel counter, tombstone, running
# ARGV: token, seq, event, data, wire, finishing, keep, running ttl, tombstone ttl,
#       stream id, channel window
_APPEND = """
local m = redis.call('HMGET', KEYS[2], 'producer', 'last', 'finished')
if not m[1] then return redis.error_reply('TWGONE the stream is gone') end
if m[1] ~= ARGV[1] then return redis.error_reply('TWTAKEN another replica ended it') end
local seq = tonumber(ARGV[2])
if seq <= tonumber(m[2]) then return seq end
if m[3] == '1' then return redis.error_reply('TWTAKEN the stream is finished') end
if seq ~= tonumber(m[2]) + 1 then return redis.error_reply('TWGAP an earlier event is missing') end
redis.call('XADD', KEYS[1], '0-' .. seq, 'e', ARGV[3], 'd', ARGV[4], 'w', ARGV[5])
redis.call('HSET', KEYS[2], 'last', seq)
if ARGV[6] == '1' then
  redis.call('HSET', KEYS[2], 'finished', 1)
  redis.call('EXPIRE', KEYS[2], ARGV[7])
  redis.call('EXPIRE', KEYS[1], ARGV[7])
  redis.call('SET', KEYS[5], 1, 'EX', ARGV[9])
  redis.call('ZREM', KEYS[6], ARGV[10])
elseif seq == 1 then
  redis.call('EXPIRE', KEYS[1], ARGV[8])
end
local n = redis.call('INCR', KEYS[4])
redis.call('XADD', KEYS[3], 'MAXLEN', ARGV[11], '0-' .. n,
           'i', ARGV[10], 'q', seq, 'e', ARGV[3], 'd', ARGV[4])
return seq
"""

# KEYS: running. ARGV: lease ms, stream ids...  (XX: a claimed or finished stream stays out)
_RENEW = f"""
{_NOW_MS}
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[1]), ARGV[i]) end
return #ARGV - 1
"""

# KEYS: running. ARGV: token, lease ms, how many, key prefix.
# Claiming a stream is taking over its lease: should this replica die while ending
# it, the lease lapses again and yet another replica claims it.
_CLAIM = f"""
{_NOW_MS}
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(ids) do
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), id)
  local meta = ARGV[4] .. ':m:' .. id
  if redis.call('EXISTS', meta) == 1 then redis.call('HSET', meta, 'producer', ARGV[1]) end
end
return ids
"""

# What a lost connection raises. RuntimeError too: on uvloop, redis-py writes to a
# transport that was already closed and uvloop says so with a RuntimeError (the
# connection is dropped first, so the next try reconnects).
_UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError, RuntimeError)
_FAILED = (RedisError, OSError, RuntimeError)

_BLOCK_MS = 1000
_WRITE_BATCH = 512  # appends per round trip, at most
_QUEUE_LIMIT = 4096  # appends waiting for Redis before producers wait too
_COMMANDS = 256  # connections for commands, per replica
_FOLLOWERS = 4096  # streams and channels followed at once, per replica (one connection each)
_RUNNING_TTL = 24 * 3600  # keys of a running answer expire even if every replica vanished
_OUTAGE_TOLERANCE = 2.0  # a listener waits this long for Redis before its response ends
_CLAIM_BATCH = 32


class _Produced:
    """A stream this replica writes: the last number written, and the last one queued.

    ``broken`` is set once a write failed for good: later writes would leave a gap,
    so they fail the same way, and the stream is left to its lease.
    """

    __slots__ = ("owner", "last", "queued", "broken", "log", "keys")

    def __init__(self, owner: str, last: int, keys: list[str], log: _Mirror | None = None) -> None:
        self.owner = owner
        self.last = last
        self.queued = last
        self.broken: Exception | None = None
        self.log = log  # what was written, for this replica's own listeners
        self.keys = keys  # the append script's keys, made once rather than per token


class _Write:
    __slots__ = ("stream_id", "produced", "entry", "keys", "args", "done")

    def __init__(
        self,
        stream_id: str,
        produced: _Produced,
        entry: Entry,
        keys: list[str],
        args: list[str | int | bytes],
        done: asyncio.Future[int],
    ) -> None:
        self.stream_id = stream_id
        self.produced = produced
        self.entry = entry
        self.keys = keys
        self.args = args
        self.done = done


class _Mirror(LocalLog):
    """A local copy of one Redis stream, filled by one follower task."""

    __slots__ = ("task", "subscribers")

    def __init__(self) -> None:
        super().__init__()
        self.task: asyncio.Task[None] | None = None
        self.subscribers = 0


class _ChannelMirror(LocalChannel):
    """A user's channel as seen from this replica: from cursor ``start`` on."""

    __slots__ = ("start", "subscribers", "stopped")

    def __init__(self, window: int, start: int) -> None:
        super().__init__(window)
        self.start = start
        self.subscribers = 0
        self.stopped = asyncio.Event()


class _Abandonment:
    __slots__ = ("grace", "alone_since", "event")

    def __init__(self, grace: float) -> None:
        self.grace = grace
        self.alone_since: float | None = None
        self.event = asyncio.Event()


class RedisBroker(Broker):
    shared = True

    def __init__(
        self,
        url: str,
        *,
        retention: float = 600.0,
        tombstone_ttl: float = 86400.0,
        channel_window: int = 10_000,
        lease_timeout: float = 15.0,
        prefix: str = "tw",
    ) -> None:
        self.url = url
        self.retention = retention
        self.tombstone_ttl = tombstone_ttl
        self.channel_window = channel_window
        self.prefix = prefix
        # The bound is lease + one claim sweep: the lease gets 60% of it, renewed four
        # times per lease, and replicas look for lapsed leases every tenth of it.
        self.lease_ms = int(lease_timeout * 600)
        self.renew_every = lease_timeout * 0.15
        self.claim_every = lease_timeout * 0.1
        self.token = new_id("rp")
        # Two pools: commands, and the blocking reads of followers, each of which holds
        # a connection for up to a block period. Both wait for a free connection rather
        # than fail at once (redis-py's default pool raises past 100 in use).
        options: dict[str, Any] = {
            "socket_connect_timeout": 2.0,
            "socket_timeout": _BLOCK_MS / 1000 + 5.0,
            "retry": Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=2),
            "timeout": 5.0,
        }
        commands = BlockingConnectionPool.from_url(url, max_connections=_COMMANDS, **options)
        reads = BlockingConnectionPool.from_url(url, max_connections=_FOLLOWERS, **options)
        self.redis: aioredis.Redis = aioredis.Redis(connection_pool=commands)
        self._reads: aioredis.Redis = aioredis.Redis(connection_pool=reads)
        self._create_script = self.redis.register_script(_CREATE)
        self._append_sha = self.redis.register_script(_APPEND).sha
        self._renew_script = self.redis.register_script(_RENEW)
        self._claim_script = self.redis.register_script(_CLAIM)
        self._produced: dict[str, _Produced] = {}
        self._mirrors: dict[str, _Mirror] = {}
        self._channels: dict[str, _ChannelMirror] = {}
        self._cancelled: dict[str, asyncio.Event] = {}
        self._abandonment: dict[str, _Abandonment] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._started: asyncio.Task[None] | None = None
        self._listeners_task: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()
        self._queue: list[_Write] = []
        self._queued = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._claim_after = 0.0

    def _key(self, kind: str, name: str) -> str:
        return f"{self.prefix}:{kind}:{name}"

    def _append_keys(self, stream_id: str, owner: str) -> list[str]:
        """KEYS of the append script, in its order."""
        return [
            self._key("s", stream_id),
            self._key("m", stream_id),
            self._key("u", owner),
            self._key("un", owner),
            self._key("t", stream_id),
            self._key("running", "all"),
        ]

    def describe(self) -> str:
        parts = urlsplit(self.url)
        if parts.password is None:
            return self.url
        netloc = parts.netloc.rsplit("@", 1)[1]
        user = f"{parts.username}:***@" if parts.username else ":***@"
        return urlunsplit(parts._replace(netloc=user + netloc))

    # -- background work -----------------------------------------------------------

    async def start(self) -> None:
        """Subscribe to cancels and start the heartbeat; once, however often called."""
        if self._started is None:
            self._started = asyncio.create_task(self._start())
        await asyncio.shield(self._started)

    async def _start(self) -> None:
        await self._unavailable_as_503(self.redis.script_load(_APPEND))
        pubsub = self.redis.pubsub()
        await self._unavailable_as_503(pubsub.subscribe(self._key("cancel", "all")))
        self._spawn(self._cancels(pubsub))
        self._spawn(self._heartbeat())

    async def _ensure_started(self) -> None:
        if self._started is None or self._started.done():
            if self._started is not None and self._started.exception() is not None:
                self._started = None  # Redis was down at the first try: try again
            await self.start()

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake at once when the broker closes."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._closing.wait()

    async def _heartbeat(self) -> None:
        """Say this replica lives, and renew the lease of every stream it produces."""
        failing = False
        while not self._closing.is_set():
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    pipe.set(self._key("r", self.token), 1, px=self.lease_ms)
                    # A stream whose writes failed for good is left to lapse and be
                    # ended by whichever replica claims it.
                    held = [s for s, p in self._produced.items() if p.broken is None]
                    if held:
                        await self._renew_script(
                            keys=[self._key("running", "all")],
                            args=[self.lease_ms, *held],
                            client=pipe,
                        )
                    await pipe.execute()
                if failing:
                    log.warning("Redis is reachable again; leases renewed")
                failing = False
            except _FAILED as exc:
                if not failing:
                    log.warning("cannot renew leases in Redis: %s", exc)
                failing = True
            await self._pause(self.renew_every)

    async def _cancels(self, pubsub: Any) -> None:
        channel = self._key("cancel", "all")
        while not self._closing.is_set():
            try:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            except _FAILED as exc:
                log.warning("cancel channel lost (%s); subscribing again", exc)
                await self._pause(0.5)
                with contextlib.suppress(*_FAILED):
                    await pubsub.subscribe(channel)
                continue
            if message is not None:
                data: Any = message["data"]
                self._mark_cancelled(data.decode())
        with contextlib.suppress(*_FAILED):
            await pubsub.aclose()

    def _mark_cancelled(self, stream_id: str) -> None:
        event = self._cancelled.get(stream_id)
        if event is not None:
            event.set()

    # -- producing -------------------------------------------------------------

    async def create(self, owner: str, stream_id: str | None = None) -> str:
        stream_id = stream_id or new_id("st")
        await self._ensure_started()
        self._cancelled[stream_id] = asyncio.Event()
        try:
            await self._unavailable_as_503(
                self._create_script(
                    keys=[self._key("m", stream_id), self._key("running", "all")],
                    args=[owner, self.token, self.lease_ms, stream_id, _RUNNING_TTL],
                )
            )
        except BrokerUnavailable:
            self._cancelled.pop(stream_id, None)
            raise
        log = _Mirror()  # this replica's listeners read what it wrote: no XREAD
        self._mirrors[stream_id] = log
        self._produced[stream_id] = _Produced(owner, 0, self._append_keys(stream_id, owner), log)
        return stream_id

    async def append(self, stream_id: str, event: str, data: str) -> int:
        return await self._append(stream_id, event, data, finishing=False)

    async def finish(self, stream_id: str, data: str) -> int:
        try:
            return await self._append(stream_id, TERMINAL_EVENT, data, finishing=True)
        finally:
            self._produced.pop(stream_id, None)
            self._cancelled.pop(stream_id, None)

    async def _append(self, stream_id: str, event: str, data: str, *, finishing: bool) -> int:
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
        if produced.broken is not None:
            raise produced.broken
        produced.queued += 1
        seq = produced.queued
        entry = encode_entry(seq, event, data)
        wire = entry[3]
        keep = int(self.retention) or 1
        write = _Write(
            stream_id,
            produced,
            entry,
            produced.keys,
            [
                self.token,
                seq,
                event,
                data,
                wire,
                1 if finishing else 0,
                keep,
                _RUNNING_TTL,
                keep + int(self.tombstone_ttl),
                stream_id,
                self.channel_window,
            ],
            asyncio.get_running_loop().create_future(),
        )
        write.done.add_done_callback(_retrieve)
        self._queue.append(write)
        if self._writer is None or self._writer.done():
            self._writer = self._spawn(self._write_queued())
        self._queued.set()
        if finishing or len(self._queue) > _QUEUE_LIMIT:
            return await asyncio.shield(write.done)
        return seq

    async def _write_queued(self) -> None:
        """The replica's one writer: every queued append, in batches of one round trip each.

        A round trip per token and per generation was the replica's main cost
        (half its CPU at 200 streams × 20 tokens/s); one pipeline carries what all
        generations appended meanwhile.
        """
        while not self._closing.is_set() or self._queue:
            if not self._queue:
                self._queued.clear()
                await self._queued.wait()
                continue
            batch, self._queue = self._queue[:_WRITE_BATCH], self._queue[_WRITE_BATCH:]
            await self._write_batch(batch)

    async def _write_batch(self, batch: list[_Write]) -> None:
        """Send one batch, retrying it whole through an outage (the script is idempotent)."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self.lease_ms / 1000
        delay = 0.05
        while True:
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for write in batch:
                        pipe.evalsha(self._append_sha, len(write.keys), *write.keys, *write.args)
                    results: list[Any] = await pipe.execute(raise_on_error=False)
                if any(isinstance(r, NoScriptError) for r in results):
                    await self.redis.script_load(_APPEND)  # Redis restarted: load it again
                    continue
                break
            except _UNREACHABLE as exc:
                if loop.time() + delay > give_up:
                    failure = BrokerUnavailable(
                        f"Redis has been unreachable for {self.lease_ms / 1000:.0f} s: {exc}"
                    )
                    for write in batch:
                        self._fail(write, failure)
                    return
                log.warning("appending to Redis failed (%s); retrying in %.2f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
        grown: dict[str, _Mirror] = {}
        for write, result in zip(batch, results, strict=True):
            if isinstance(result, ResponseError):
                message = str(result)
                if message.startswith(("TWTAKEN", "TWGONE", "TWGAP")):
                    self._fail(write, StreamTakenOver(f"stream {write.stream_id!r}: {message}"))
                else:
                    self._fail(write, BrokerUnavailable(f"Redis refused an append: {message}"))
                continue
            produced = write.produced
            seq = write.entry[0]
            produced.last = seq
            own = produced.log
            if own is not None and not own.finished:
                own.entries.append(write.entry)
                if write.entry[1] == TERMINAL_EVENT:
                    own.finished = True
                    if own.subscribers == 0:
                        self._drop_mirror(write.stream_id, own)
                grown[write.stream_id] = own
            if not write.done.done():
                write.done.set_result(seq)
        for own in grown.values():
            own.notify()

    def _fail(self, write: _Write, error: Exception) -> None:
        produced = write.produced
        produced.broken = error
        own = produced.log
        if own is not None and not own.finished:
            # Listeners here end their responses (no ``end``) and resume from Redis,
            # where whoever ends the stream now writes the rest.
            own.finished = True
            own.notify()
            self._drop_mirror(write.stream_id, own)
        if not write.done.done():
            write.done.set_exception(error)

    # -- listening ---------------------------------------------------------------

    async def info(self, stream_id: str, owner: str) -> StreamInfo:
        meta: Any = await self._unavailable_as_503(self.redis.hgetall(self._key("m", stream_id)))
        if not meta or meta.get(b"owner", b"").decode() != owner:
            if not meta and await self._exists(self._key("t", stream_id)):
                raise StreamExpired(
                    f"stream {stream_id!r} finished and is past its retention period"
                )
            raise StreamNotFound(f"no stream {stream_id!r}")
        return StreamInfo(stream_id, owner, int(meta[b"last"]), meta[b"finished"] == b"1")

    async def subscribe(self, stream_id: str, owner: str, after: int) -> Subscription:
        info = await self.info(stream_id, owner)
        if after > info.last_seq:
            raise InvalidLastEventId(
                f"Last-Event-ID {after} is beyond the last event of stream {stream_id!r} "
                f"(it has reached {info.last_seq})",
            )
        await self._ensure_started()
        await self._count_listener(stream_id, 1)
        mirror = self._mirror(stream_id)
        mirror.subscribers += 1
        return LocalSubscription(mirror, after, self._listener_left(stream_id, mirror))

    async def _count_listener(self, stream_id: str, change: int) -> None:
        key = self._key("l", stream_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hincrby(key, self.token, change)
            pipe.expire(key, _RUNNING_TTL)
            await self._unavailable_as_503(pipe.execute())

    def _listener_left(self, stream_id: str, mirror: _Mirror) -> Callable[[], Awaitable[None]]:
        async def left() -> None:
            mirror.subscribers -= 1
            if mirror.subscribers == 0 and mirror.finished:
                self._drop_mirror(stream_id, mirror)
            with contextlib.suppress(BrokerUnavailable):
                await self._count_listener(stream_id, -1)

        return left

    def _drop_mirror(self, stream_id: str, mirror: _Mirror) -> None:
        if self._mirrors.get(stream_id) is mirror:
            del self._mirrors[stream_id]

    def _mirror(self, stream_id: str) -> _Mirror:
        mirror = self._mirrors.get(stream_id)
        if mirror is None:
            mirror = self._mirrors[stream_id] = _Mirror()
            mirror.task = self._spawn(self._follow(stream_id, mirror))
        return mirror

    async def _read_on(
        self, key: str, after: str, until: Callable[[], bool]
    ) -> AsyncGenerator[list[tuple[bytes, dict[bytes, bytes]]], None]:
        """Blocking reads of one Redis stream: batches of new entries (``[]`` when idle).

        Ends when ``until()`` holds (checked after every read, so within one block
        period) or when Redis has been lost for longer than a blip: the reader's
        listeners then end their responses cleanly and their clients resume.
        """
        connection = self._reads
        lost_since: float | None = None
        loop = asyncio.get_running_loop()
        while not until() and not self._closing.is_set():
            try:
                reply: Any = await connection.xread({key: after}, count=512, block=_BLOCK_MS)
            except _FAILED as exc:
                lost_since = lost_since or loop.time()
                if loop.time() - lost_since > _OUTAGE_TOLERANCE:
                    log.warning("reading %s stopped: %s", key, exc)
                    return
                await self._pause(0.1)
                continue
            lost_since = None
            items = reply[0][1] if reply else []
            if items:
                after = items[-1][0].decode()
            yield items

    async def _follow(self, stream_id: str, mirror: _Mirror) -> None:
        """Copy the Redis stream into the mirror until its ``end``."""
        reads = self._read_on(self._key("s", stream_id), "0-0", lambda: mirror.finished)
        async with contextlib.aclosing(reads):
            async for items in reads:
                for entry_id, fields in items:
                    event = fields[b"e"].decode()
                    entry: Entry = (_seq(entry_id), event, fields[b"d"].decode(), fields[b"w"])
                    mirror.entries.append(entry)
                    if event == TERMINAL_EVENT:
                        mirror.finished = True
                mirror.notify()
                if not items and await self._expired(stream_id):
                    break  # expired under us: end the listeners cleanly
        mirror.finished = True
        mirror.notify()
        if mirror.subscribers == 0 or not mirror.entries or mirror.entries[-1][1] != TERMINAL_EVENT:
            self._drop_mirror(stream_id, mirror)  # nobody left, or broken: the next one re-reads

    async def subscribe_channel(self, owner: str, after: str | None) -> Subscription:
        stored: Any = await self._unavailable_as_503(self.redis.get(self._key("un", owner)))
        last = int(stored or 0)
        cursor = last if after is None else parse_cursor(after)
        if cursor > last:
            raise InvalidLastEventId(
                f"Last-Event-ID {after!r} is beyond this channel's last event ({last})",
            )
        key = self._key("u", owner)
        if after is not None and cursor < last:
            first: Any = await self._unavailable_as_503(self.redis.xrange(key, count=1))
            first_seq = _seq(first[0][0]) if first else last + 1
            if cursor < first_seq - 1:
                raise StreamExpired(
                    f"channel cursor {after!r} is older than the kept window; reload and "
                    "connect without Last-Event-ID",
                    code="cursor_expired",
                )
        channel = self._channels.get(owner)
        if channel is None or channel.finished or cursor < channel.start:
            # One follower per user and replica, however many tabs listen; a listener
            # resuming from before the shared one's start gets a follower of its own.
            fresh = _ChannelMirror(self.channel_window, cursor)
            if channel is None or channel.finished:
                self._channels[owner] = fresh
            channel = fresh
            self._spawn(self._follow_channel(key, channel, cursor, channel.stopped))
        channel.subscribers += 1
        shared = channel

        async def stop() -> None:
            shared.subscribers -= 1
            if shared.subscribers == 0:
                shared.stopped.set()  # the follower sees it within one blocking read
                if self._channels.get(owner) is shared:
                    del self._channels[owner]

        return LocalSubscription(channel, cursor, stop)

    async def _follow_channel(
        self, key: str, channel: _ChannelMirror, cursor: int, stopped: asyncio.Event
    ) -> None:
        reads = self._read_on(key, f"0-{cursor}", stopped.is_set)
        async for items in reads:
            for entry_id, f in items:
                ref = (
                    _seq(entry_id),
                    f[b"i"].decode(),
                    int(f[b"q"]),
                    f[b"e"].decode(),
                    f[b"d"].decode(),
                )
                channel.entries.append(ref)
            channel.notify()
        channel.finished = True  # the listener's response ends; it resumes by cursor
        channel.notify()

    # -- control -----------------------------------------------------------------

    async def cancel(self, stream_id: str, owner: str) -> None:
        info = await self.info(stream_id, owner)
        if info.finished:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(self._key("c", stream_id), 1, ex=_RUNNING_TTL)
            pipe.publish(self._key("cancel", "all"), stream_id)
            await self._unavailable_as_503(pipe.execute())

    async def wait_cancelled(self, stream_id: str) -> None:
        # Only a local event: set by the pub/sub listener or by the listener-count
        # poller that also reads the cancel flags.
        await self._cancelled.setdefault(stream_id, asyncio.Event()).wait()

    async def wait_abandoned(self, stream_id: str, grace: float) -> None:
        """Waits on a local event that one poller task (``_watch_listeners``) sets."""
        watch = _Abandonment(grace)
        self._abandonment[stream_id] = watch
        if self._listeners_task is None or self._listeners_task.done():
            self._listeners_task = self._spawn(self._watch_listeners())
        try:
            await watch.event.wait()
        finally:
            self._abandonment.pop(stream_id, None)

    async def _watch_listeners(self) -> None:
        """One loop for every running generation: listener counts and cancel flags."""
        loop = asyncio.get_running_loop()
        while self._abandonment and not self._closing.is_set():
            watched = list(self._abandonment.items())
            try:
                counts, cancelled = await self._listeners_and_cancels([s for s, _ in watched])
            except _FAILED as exc:
                log.warning("listener counts unavailable: %s", exc)
                counts, cancelled = [1] * len(watched), []  # unknown: assume someone listens
            for stream_id in cancelled:
                self._mark_cancelled(stream_id)
            now = loop.time()
            for (_, watch), count in zip(watched, counts, strict=True):
                if count > 0:
                    watch.alone_since = None
                elif watch.alone_since is None:
                    watch.alone_since = now
                elif now - watch.alone_since >= watch.grace:
                    watch.event.set()
            step = min([max(w.grace / 4, 0.05) for _, w in watched] + [1.0])
            await self._pause(step)

    async def _listeners_and_cancels(self, stream_ids: list[str]) -> tuple[list[int], list[str]]:
        """Listeners per stream on live replicas only, and which streams were cancelled."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for stream_id in stream_ids:
                pipe.hgetall(self._key("l", stream_id))
                pipe.exists(self._key("c", stream_id))
            replies: list[Any] = await pipe.execute()
        per_stream: list[dict[str, int]] = [
            {token.decode(): int(count) for token, count in reply.items() if int(count) > 0}
            for reply in replies[0::2]
        ]
        others = sorted({t for counts in per_stream for t in counts} - {self.token})
        alive = {self.token}
        if others:
            found: Any = await self.redis.mget([self._key("r", t) for t in others])
            alive.update(t for t, value in zip(others, found, strict=True) if value)
        totals = [sum(c for t, c in counts.items() if t in alive) for counts in per_stream]
        cancelled = [s for s, flag in zip(stream_ids, replies[1::2], strict=True) if flag]
        return totals, cancelled

    # -- replicas that died --------------------------------------------------------

    async def claim_orphans(self) -> list[Orphan]:
        loop = asyncio.get_running_loop()
        if loop.time() < self._claim_after:
            return []
        try:
            await self._ensure_started()
            claimed: Any = await self._claim_script(
                keys=[self._key("running", "all")],
                args=[self.token, self.lease_ms, _CLAIM_BATCH, self.prefix],
            )
            orphans = [await self._orphan(raw.decode()) for raw in claimed]
        except (*_FAILED, BrokerUnavailable) as exc:
            # Our own view of Redis just failed: the producers' renewals may have failed
            # the same way, so give them one lease period to renew before judging them.
            log.warning("cannot look for lapsed leases: %s", exc)
            self._claim_after = loop.time() + self.lease_ms / 1000
            return []
        return [orphan for orphan in orphans if orphan is not None]

    async def _orphan(self, stream_id: str) -> Orphan | None:
        meta: Any = await self.redis.hgetall(self._key("m", stream_id))
        if not meta or meta.get(b"finished") == b"1":
            await self.redis.zrem(self._key("running", "all"), stream_id)
            return None
        owner = meta[b"owner"].decode()
        items: Any = await self.redis.xrange(self._key("s", stream_id))
        entries: list[Entry] = [
            (_seq(entry_id), f[b"e"].decode(), f[b"d"].decode(), f[b"w"]) for entry_id, f in items
        ]
        log.warning("stream %s lost its replica; ending it here", stream_id)
        keys = self._append_keys(stream_id, owner)
        self._produced[stream_id] = _Produced(owner, int(meta[b"last"]), keys)
        return Orphan(stream_id, owner, entries)

    async def live(self, stream_ids: list[str]) -> set[str]:
        if not stream_ids:
            return set()
        scores: Any = await self._unavailable_as_503(
            self.redis.zmscore(self._key("running", "all"), stream_ids)
        )
        return {s for s, score in zip(stream_ids, scores, strict=True) if score is not None}

    # -- health and shutdown ---------------------------------------------------------

    async def ping(self) -> bool:
        """Bounded without cancelling a command (see the module's note on cancels)."""

        async def ping() -> bool:
            return bool(await self.redis.ping())

        probe = asyncio.create_task(ping())
        probe.add_done_callback(_retrieve)
        done, _ = await asyncio.wait((probe,), timeout=2.0)
        return bool(done and probe.exception() is None and probe.result())

    async def close(self) -> None:
        self._closing.set()
        self._queued.set()  # the writer sends what is queued, then stops
        tasks = set(self._tasks)
        if tasks:
            # Loops stop on the flag within one blocking read; cancel is the backstop.
            _, pending = await asyncio.wait(tasks, timeout=_BLOCK_MS / 1000 + 0.5)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)
        for mirror in self._mirrors.values():
            mirror.finished = True
            mirror.notify()
        await self.redis.aclose(close_connection_pool=True)
        await self._reads.aclose(close_connection_pool=True)

    async def _expired(self, stream_id: str) -> bool:
        try:
            return not await self._exists(self._key("m", stream_id))
        except BrokerUnavailable:
            return False  # not known: the next read finds out

    async def _exists(self, key: str) -> bool:
        found: Any = self.redis.exists(key)
        return bool(await self._unavailable_as_503(found))

    async def _unavailable_as_503(self, awaitable: Awaitable[T]) -> T:
        try:
            return await awaitable
        except _UNREACHABLE as exc:
            raise BrokerUnavailable(
                f"the stream broker (Redis) is unavailable; try again shortly ({exc})"
            ) from None


def _seq(entry_id: bytes) -> int:
    return int(entry_id.split(b"-")[1])


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Mark a background task's exception as seen: its waiter may have been cancelled."""
    if not task.cancelled():
        task.exception()
