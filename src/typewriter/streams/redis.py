"""Streams in Redis, so that any replica can replay, follow and stop any answer.

One Redis stream per answer (``tw:s:{id}``), entry ids ``0-{seq}`` so that
``Last-Event-ID`` maps straight onto ``XREAD``, each entry carrying its SSE
encoding (``w``) so no replica encodes it again. A hash (``tw:m:{id}``) holds
the owner and whether the answer is finished; a tombstone (``tw:t:{id}``)
outlives both so an expired stream answers 410, not 404. Each user's channel
is one more stream, numbered by a Lua script so two replicas appending at once
still give consecutive cursors.

A replica does not read Redis once per listener: the first local listener of a
stream starts one follower (a blocking ``XREAD`` loop) that mirrors the stream
into a :class:`~typewriter.streams.local.LocalLog`, and every local listener
reads that log from its own cursor, as with the memory broker.

Stop travels as a pub/sub message on ``tw:cancel``, to which every replica
subscribes before it creates its first stream, so it reaches the generating
replica wherever it was asked. Listener counts live in Redis (``tw:l:{id}``),
so the grace period sees listeners on every replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from typewriter.errors import InvalidLastEventId, StreamExpired, StreamNotFound
from typewriter.ids import new_id
from typewriter.streams.base import (
    TERMINAL_EVENT,
    Broker,
    Entry,
    StreamInfo,
    Subscription,
    encode_entry,
    parse_cursor,
)
from typewriter.streams.local import LocalChannel, LocalLog, LocalSubscription

__all__ = ["RedisBroker"]

log = logging.getLogger(__name__)

_CHANNEL_APPEND = """
local n = redis.call('INCR', KEYS[2])
redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[1], '0-' .. n,
           'i', ARGV[2], 'q', ARGV[3], 'e', ARGV[4], 'd', ARGV[5])
return n
"""
_BLOCK_MS = 1000
_RUNNING_TTL = 24 * 3600  # keys of a running answer expire even if its replica vanished


class _Mirror(LocalLog):
    """A local copy of one Redis stream, filled by one follower task."""

    __slots__ = ("task", "subscribers")

    def __init__(self) -> None:
        super().__init__()
        self.task: asyncio.Task[None] | None = None
        self.subscribers = 0


class _Abandonment:
    __slots__ = ("grace", "alone_since", "event")

    def __init__(self, grace: float) -> None:
        self.grace = grace
        self.alone_since: float | None = None
        self.event = asyncio.Event()


class RedisBroker(Broker):
    def __init__(
        self,
        url: str,
        *,
        retention: float = 600.0,
        tombstone_ttl: float = 86400.0,
        channel_window: int = 10_000,
        prefix: str = "tw",
    ) -> None:
        self.url = url
        self.retention = retention
        self.tombstone_ttl = tombstone_ttl
        self.channel_window = channel_window
        self.prefix = prefix
        self.redis: aioredis.Redis = aioredis.from_url(url)
        self._channel_append = self.redis.register_script(_CHANNEL_APPEND)
        self._produced: dict[str, tuple[str, int]] = {}  # stream -> (owner, last seq)
        self._mirrors: dict[str, _Mirror] = {}
        self._cancelled: dict[str, asyncio.Event] = {}
        self._pubsub_task: asyncio.Task[None] | None = None
        self._abandonment: dict[str, _Abandonment] = {}
        self._listeners_task: asyncio.Task[None] | None = None

    def _key(self, kind: str, name: str) -> str:
        return f"{self.prefix}:{kind}:{name}"

    # -- producing -------------------------------------------------------------

    async def create(self, owner: str, stream_id: str | None = None) -> str:
        stream_id = stream_id or new_id("st")
        await self._listen_for_cancels()
        meta = self._key("m", stream_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(meta, mapping={"owner": owner, "finished": 0, "last": 0})
            pipe.expire(meta, _RUNNING_TTL)
            await pipe.execute()
        self._produced[stream_id] = (owner, 0)
        self._cancelled[stream_id] = asyncio.Event()
        return stream_id

    async def append(self, stream_id: str, event: str, data: str) -> int:
        return await self._append(stream_id, event, data, finishing=False)

    async def finish(self, stream_id: str, data: str) -> int:
        seq = await self._append(stream_id, TERMINAL_EVENT, data, finishing=True)
        self._produced.pop(stream_id, None)
        self._cancelled.pop(stream_id, None)
        return seq

    async def _append(self, stream_id: str, event: str, data: str, *, finishing: bool) -> int:
        """One transaction: the entry, the stream's last number, and (at the end) "finished".

        Atomic so that no reader can see ``end`` in the stream while the stream is
        not yet marked finished (it would then wait for more instead of answering 204).
        """
        owner, last = self._produced[stream_id]
        seq = last + 1
        _, _, _, wire = encode_entry(seq, event, data)
        stream, meta = self._key("s", stream_id), self._key("m", stream_id)
        keep = int(self.retention) or 1
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xadd(stream, {"e": event, "d": data, "w": wire}, id=f"0-{seq}")
            pipe.hset(meta, "last", seq)
            if finishing:
                pipe.hset(meta, "finished", 1)
                pipe.expire(meta, keep)
                pipe.expire(stream, keep)
                pipe.set(self._key("t", stream_id), 1, ex=keep + int(self.tombstone_ttl))
            else:
                pipe.expire(stream, _RUNNING_TTL)
            try:
                await pipe.execute()
            except ResponseError as exc:
                if "equal or smaller" not in str(exc):
                    raise  # anything but "already appended" (a retried append) is an error
        self._produced[stream_id] = (owner, seq)
        await self._channel_append(
            keys=[self._key("u", owner), self._key("un", owner)],
            args=[self.channel_window, stream_id, seq, event, data],
        )
        return seq

    # -- listening ---------------------------------------------------------------

    async def info(self, stream_id: str, owner: str) -> StreamInfo:
        meta: Any = await self.redis.hgetall(self._key("m", stream_id))
        if not meta or meta.get(b"owner", b"").decode() != owner:
            if not meta and await self.redis.exists(self._key("t", stream_id)):
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
        mirror = self._mirror(stream_id)
        mirror.subscribers += 1
        await self.redis.incr(self._key("l", stream_id))
        return LocalSubscription(mirror, after, self._listener_left(stream_id, mirror))

    def _listener_left(self, stream_id: str, mirror: _Mirror) -> Callable[[], Awaitable[None]]:
        async def left() -> None:
            mirror.subscribers -= 1
            if mirror.subscribers == 0 and mirror.finished:
                self._mirrors.pop(stream_id, None)
            with contextlib.suppress(RedisError):
                await self.redis.decr(self._key("l", stream_id))

        return left

    def _mirror(self, stream_id: str) -> _Mirror:
        mirror = self._mirrors.get(stream_id)
        if mirror is None:
            mirror = self._mirrors[stream_id] = _Mirror()
            mirror.task = asyncio.create_task(self._follow(stream_id, mirror))
        return mirror

    async def _follow(self, stream_id: str, mirror: _Mirror) -> None:
        """Copy the Redis stream into the mirror until its ``end``."""
        key = self._key("s", stream_id)
        last = "0-0"
        connection = aioredis.Redis(connection_pool=self.redis.connection_pool)
        try:
            while not mirror.finished:
                reply: Any = await connection.xread({key: last}, count=512, block=_BLOCK_MS)
                for _, items in reply or ():
                    for entry_id, fields in items:
                        last = entry_id.decode()
                        seq = int(last.split("-")[1])
                        event = fields[b"e"].decode()
                        entry: Entry = (seq, event, fields[b"d"].decode(), fields[b"w"])
                        mirror.entries.append(entry)
                        if event == TERMINAL_EVENT:
                            mirror.finished = True
                    mirror.notify()
                if not reply and not await self.redis.exists(self._key("m", stream_id)):
                    mirror.finished = True  # expired under us: end the listeners cleanly
                    mirror.notify()
        except RedisError as exc:
            log.warning("following %s stopped: %s", stream_id, exc)
            mirror.finished = True  # listeners end their response and resume elsewhere
            mirror.notify()
            self._mirrors.pop(stream_id, None)

    async def subscribe_channel(self, owner: str, after: str | None) -> Subscription:
        stored: Any = await self.redis.get(self._key("un", owner))
        last = int(stored or 0)
        cursor = last if after is None else parse_cursor(after)
        if cursor > last:
            raise InvalidLastEventId(
                f"Last-Event-ID {after!r} is beyond this channel's last event ({last})",
            )
        key = self._key("u", owner)
        if after is not None and cursor < last:
            first: Any = await self.redis.xrange(key, count=1)
            first_seq = int(first[0][0].decode().split("-")[1]) if first else last + 1
            if cursor < first_seq - 1:
                raise StreamExpired(
                    f"channel cursor {after!r} is older than the kept window; reload and "
                    "connect without Last-Event-ID",
                    code="cursor_expired",
                )
        channel = LocalChannel(self.channel_window)
        task = asyncio.create_task(self._follow_channel(key, channel, cursor))

        async def stop() -> None:
            task.cancel()

        return LocalSubscription(channel, cursor, stop)

    async def _follow_channel(self, key: str, channel: LocalChannel, cursor: int) -> None:
        last = f"0-{cursor}"
        connection = aioredis.Redis(connection_pool=self.redis.connection_pool)
        with contextlib.suppress(RedisError):
            while True:
                reply: Any = await connection.xread({key: last}, count=512, block=_BLOCK_MS)
                for _, items in reply or ():
                    for entry_id, f in items:
                        last = entry_id.decode()
                        ref = (
                            int(last.split("-")[1]),
                            f[b"i"].decode(),
                            int(f[b"q"]),
                            f[b"e"].decode(),
                            f[b"d"].decode(),
                        )
                        channel.entries.append(ref)  # type: ignore[arg-type]
                    channel.notify()

    # -- control -----------------------------------------------------------------

    async def cancel(self, stream_id: str, owner: str) -> None:
        info = await self.info(stream_id, owner)
        if info.finished:
            return
        await self.redis.publish(self._key("cancel", "all"), stream_id)

    async def _listen_for_cancels(self) -> None:
        if self._pubsub_task is not None:
            return
        pubsub = self.redis.pubsub()
        await pubsub.subscribe(self._key("cancel", "all"))
        self._pubsub_task = asyncio.create_task(self._cancels(pubsub))

    async def _cancels(self, pubsub: Any) -> None:
        while True:
            try:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5.0)
            except RedisError as exc:
                log.warning("cancel channel lost (%s); resubscribing", exc)
                await asyncio.sleep(1.0)
                with contextlib.suppress(RedisError):
                    await pubsub.subscribe(self._key("cancel", "all"))
                continue
            if message is not None:
                data: Any = message["data"]
                event = self._cancelled.get(data.decode())
                if event is not None:
                    event.set()

    async def wait_cancelled(self, stream_id: str) -> None:
        # Only a local event: the cancel subscription exists before ``create`` returns,
        # and redis-py may swallow the cancel of a task caught inside a command.
        await self._cancelled.setdefault(stream_id, asyncio.Event()).wait()

    async def wait_abandoned(self, stream_id: str, grace: float) -> None:
        """Waits on a local event that one poller task (``_watch_listeners``) sets."""
        watch = _Abandonment(grace)
        self._abandonment[stream_id] = watch
        if self._listeners_task is None or self._listeners_task.done():
            self._listeners_task = asyncio.create_task(self._watch_listeners())
        try:
            await watch.event.wait()
        finally:
            self._abandonment.pop(stream_id, None)

    async def _watch_listeners(self) -> None:
        """One loop for every waiting generation: read their listener counts, set events."""
        loop = asyncio.get_running_loop()
        while self._abandonment:
            watched = list(self._abandonment.items())
            try:
                counts: Any = await self.redis.mget([self._key("l", sid) for sid, _ in watched])
            except RedisError as exc:
                log.warning("listener counts unavailable: %s", exc)
                counts = [b"1"] * len(watched)  # unknown: assume someone listens
            now = loop.time()
            for (_, watch), count in zip(watched, counts, strict=True):
                if int(count or 0) > 0:
                    watch.alone_since = None
                elif watch.alone_since is None:
                    watch.alone_since = now
                elif now - watch.alone_since >= watch.grace:
                    watch.event.set()
            step = min([max(w.grace / 4, 0.05) for _, w in watched] + [0.5])
            await asyncio.sleep(step)

    async def ping(self) -> bool:
        try:
            return bool(await self.redis.ping())
        except (RedisError, OSError):
            return False

    async def close(self) -> None:
        tasks = [m.task for m in self._mirrors.values() if m.task is not None]
        for task in (self._pubsub_task, self._listeners_task):
            if task is not None:
                tasks.append(task)
        for task in tasks:
            task.cancel()
        if tasks:
            # bounded: redis-py may swallow a cancel that lands inside a command
            await asyncio.wait(tasks, timeout=2.0)
        for mirror in self._mirrors.values():
            mirror.finished = True
            mirror.notify()
        await self.redis.aclose()
