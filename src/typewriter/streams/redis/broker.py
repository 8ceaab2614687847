"""The Redis broker: its parts composed behind :class:`~typewriter.streams.base.Broker`.

Each part owns its own state; this module only wires them and says which part
answers which call. See the package's docstring for what each part does.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from typing import Any

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
    ChannelSubscription,
    Orphan,
    StreamInfo,
    Subscription,
)
from typewriter.streams.redis.background import Background
from typewriter.streams.redis.cancels import Cancels
from typewriter.streams.redis.channels import ChannelFollowers
from typewriter.streams.redis.connection import BLOCK_MS, FAILED, Connections, or_unavailable
from typewriter.streams.redis.epoch import Epoch
from typewriter.streams.redis.followers import StreamFollowers
from typewriter.streams.redis.keys import RUNNING_TTL, Keys
from typewriter.streams.redis.leases import Leases
from typewriter.streams.redis.presence import Listeners
from typewriter.streams.redis.restore import Restorer
from typewriter.streams.redis.writer import Writer

__all__ = ["RedisBroker"]

_PRODUCER_RESTORES = 3.0  # seconds a live producer may take to write back what Redis lost


class RedisBroker(Broker):
    """Streams in Redis, shared by every replica that uses the same ``url`` and ``prefix``.

    ``retention`` is how long a finished stream stays readable, ``tombstone_ttl``
    how long it then answers "expired"; ``lease_timeout`` bounds how long the
    streams of a replica that died stay unanswered; ``timeout`` how long one
    command may take before it counts as failed.
    """

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
        timeout: float = 3.0,
    ) -> None:
        token = new_id("rp")
        keys = Keys(prefix)
        # The bound is lease + one claim sweep: the lease gets 60% of it, renewed four
        # times per lease, and replicas look for lapsed leases every tenth of it (the
        # gateway's sweep).
        lease_ms = int(lease_timeout * 600)
        self._connections = Connections(url, timeout)
        self.redis = self._connections.commands
        reads = self._connections.reads
        self._background = background = Background()
        self._epoch = epoch = Epoch(self.redis, background, keys)
        # Listeners of other replicas' answers wait out an outage as long as a lease
        # may hold (then the answer goes on, or another replica ends it once Redis is back).
        self._followers = StreamFollowers(self.redis, reads, background, keys, epoch, lease_timeout)
        self._channels = ChannelFollowers(
            self.redis, reads, background, keys, channel_window, epoch, lease_timeout
        )
        self._writer = Writer(
            self.redis,
            background,
            keys,
            self._followers,
            token=token,
            retention=retention,
            tombstone_ttl=tombstone_ttl,
            channel_window=channel_window,
            lease_ms=lease_ms,
        )
        self._leases = Leases(
            self.redis,
            background,
            keys,
            self._writer,
            token=token,
            lease_ms=lease_ms,
            renew_every=lease_timeout * 0.15,
        )
        self._cancels = Cancels(self.redis, background, keys)
        self._listeners = Listeners(self.redis, background, keys, self._cancels, token)
        self._keys = keys
        self._token = token
        self._lease = lease_ms / 1000
        self._restorer = Restorer(self.redis, keys, token=token, lease_ms=lease_ms)
        self._here: Counter[str] = Counter()  # listeners on this replica, by stream
        self._loss_unsettled = False
        epoch.on_change(self._writer.epoch_changed)
        epoch.on_change(self._data_lost)
        self._started: asyncio.Task[None] | None = None

    def describe(self) -> str:
        return self._connections.describe()

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        """Subscribe to cancels and start the heartbeat; once, however often called."""
        if self._started is None:
            self._started = asyncio.create_task(self._start())
        await asyncio.shield(self._started)

    async def _start(self) -> None:
        await self._writer.load_script()
        await or_unavailable(self._epoch.current())
        await self._cancels.start()
        self._leases.start()
        self._epoch.start()

    async def _ensure_started(self) -> None:
        if self._started is None or self._started.done():
            if self._started is not None and self._started.exception() is not None:
                self._started = None  # Redis was down at the first try: try again
            await self.start()

    async def ping(self) -> bool:
        return await self._connections.ping()

    async def close(self) -> None:
        self._background.closing.set()
        self._writer.wake()
        # Loops stop on the flag within one blocking read; cancel is the backstop.
        await self._background.stop(BLOCK_MS / 1000 + 0.5)
        self._followers.close()
        await self._connections.close()

    # -- the log -------------------------------------------------------------------

    async def create(self, owner: str, stream_id: str | None = None) -> str:
        stream_id = stream_id or new_id("st")
        await self._ensure_started()
        self._cancels.expect(stream_id)
        try:
            await self._leases.open(stream_id, owner)
        except BrokerUnavailable:
            self._cancels.forget(stream_id)
            raise
        own = self._followers.own(stream_id, owner)  # listeners here read what it wrote
        self._writer.produce(stream_id, owner, 0, own)
        return stream_id

    async def append(self, stream_id: str, event: str, data: str) -> int:
        return await self._writer.append(stream_id, event, data, finishing=False)

    async def finish(self, stream_id: str, data: str) -> int:
        try:
            return await self._writer.append(stream_id, TERMINAL_EVENT, data, finishing=True)
        finally:
            self._writer.forget(stream_id)
            self._cancels.forget(stream_id)

    async def discard(self, stream_id: str) -> None:
        """Best effort: if Redis is away, the lease (no longer renewed) lapses and another
        replica ends the empty stream."""
        self._writer.forget(stream_id)
        self._cancels.forget(stream_id)
        self._followers.discard(stream_id)
        with contextlib.suppress(BrokerUnavailable):
            await self._leases.close(stream_id)

    async def info(self, stream_id: str, owner: str) -> StreamInfo:
        return (await self._look_up(stream_id, owner))[0]

    async def _look_up(self, stream_id: str, owner: str) -> tuple[StreamInfo, bool]:
        """The stream's state, and whether it comes from this replica's mirror because
        Redis is away: a stream still running here that its owner follows (see
        :meth:`subscribe`)."""
        try:
            return await self._info(stream_id, owner), False
        except BrokerUnavailable:
            known = self._followers.known(stream_id, owner)
            if known is None:
                raise
            return known, True

    async def _info(self, stream_id: str, owner: str) -> StreamInfo:
        meta: Any = await or_unavailable(self.redis.hgetall(self._keys.meta(stream_id)))
        if not meta:
            meta = await self._restored(stream_id)
        if not meta or meta.get(b"owner", b"").decode() != owner:
            if not meta and await self._exists(self._keys.tombstone(stream_id)):
                raise StreamExpired(
                    f"stream {stream_id!r} finished and is past its retention period"
                )
            raise StreamNotFound(f"no stream {stream_id!r}")
        return StreamInfo(stream_id, owner, int(meta[b"last"]), meta[b"finished"] == b"1")

    async def _restored(self, stream_id: str) -> Any:
        """The meta of a stream Redis may have just lost: while the loss is recent, wait for
        its producer (or a replica claiming it) to write it back, rather than answer 404
        to a reconnect in between. Empty when it does not come back.

        A live producer writes its streams back within a second or two; only a stream
        followed here (whose producer may be dead, to be claimed after a lease) is
        worth waiting longer for. Any other unknown id waits the short while only.
        """
        if self._followers.following(stream_id):
            bound = self._restore_bound()
        else:
            bound = min(_PRODUCER_RESTORES, self._restore_bound())
        await self._epoch.check()
        if not self._epoch.lost_within(bound):
            return {}
        if await self._exists(self._keys.tombstone(stream_id)):
            return {}
        while self._epoch.lost_within(bound) and not self._background.closing.is_set():
            await asyncio.sleep(0.1)
            meta: Any = await or_unavailable(self.redis.hgetall(self._keys.meta(stream_id)))
            if meta:
                return meta
        return {}

    def _restore_bound(self) -> float:
        """How long after a loss a running stream may take to be back: its producer writes
        it back at once; a dead producer's is claimed after a lease, found within a sweep."""
        return self._lease * 2 + 1.0

    async def _exists(self, key: str) -> bool:
        found: Any = self.redis.exists(key)
        return bool(await or_unavailable(found))

    async def subscribe(self, stream_id: str, owner: str, after: int) -> Subscription:
        """While Redis is away, a listener of a stream this replica still mirrors (one
        who reconnects) is let in rather than refused: a ``503`` makes a browser's
        EventSource give up for good. It waits, with heartbeats, as the mirror's other
        listeners do; its cursor may be ahead of the mirror (it read elsewhere)."""
        info, mirrored = await self._look_up(stream_id, owner)
        if after > info.last_seq and not mirrored:
            raise InvalidLastEventId(
                f"Last-Event-ID {after} is beyond the last event of stream {stream_id!r} "
                f"(it has reached {info.last_seq})",
            )
        counted = True
        try:
            await self._ensure_started()
            await self._listeners.arrived(stream_id)
        except BrokerUnavailable:
            if not mirrored:
                raise
            counted = False  # the count of the listener it replaces stays meanwhile
        self._here[stream_id] += 1

        async def left() -> None:
            self._here[stream_id] -= 1
            if self._here[stream_id] <= 0:
                del self._here[stream_id]
            if counted:
                await self._listeners.left(stream_id)

        return self._followers.subscribe(stream_id, owner, after, left)

    # -- the user's channel, Stop, presence ------------------------------------------

    async def subscribe_channel(self, owner: str, after: str | None) -> ChannelSubscription:
        await self._ensure_started()
        return await self._channels.subscribe(owner, after)

    async def cancel(self, stream_id: str, owner: str) -> None:
        info = await self.info(stream_id, owner)
        if info.finished:
            return
        await self._cancels.request(stream_id)

    async def wait_cancelled(self, stream_id: str) -> None:
        await self._cancels.wait(stream_id)

    async def wait_abandoned(self, stream_id: str, grace: float) -> None:
        await self._listeners.wait_abandoned(stream_id, grace)

    # -- replicas -----------------------------------------------------------------

    async def claim_orphans(self) -> list[Orphan]:
        orphans = await self._leases.claim(self._ensure_started)
        return orphans + await self._claim_lost()

    async def _claim_lost(self) -> list[Orphan]:
        """Streams Redis lost whose producer did not write them back within a lease (it died
        too): written back from what this replica's listeners were shown, to be ended
        ``interrupted``. The first replica to restore one claims it."""
        orphans: list[Orphan] = []
        for stream_id, mirror in self._followers.lost(self._lease):
            mirror.lost_at = None  # claimed here or elsewhere: the follower watches again
            entries = list(mirror.entries)
            try:
                if not await self._restorer.restore(stream_id, mirror.owner, entries):
                    continue
            except (StreamTakenOver, *FAILED):
                continue
            self._writer.produce(stream_id, mirror.owner, len(entries), confirmed=entries)
            orphans.append(Orphan(stream_id, mirror.owner, entries))
        return orphans

    def loss_settled(self) -> bool:
        if not self._loss_unsettled or self._epoch.lost_within(self._restore_bound() + 1.0):
            return False
        self._loss_unsettled = False
        return True

    def _data_lost(self, epoch: int) -> None:
        """Redis lost its data: say again who listens here (the grace period counts them),
        and have the answers nobody restores checked once the restoring is done."""
        self._loss_unsettled = True
        counts = dict(self._here)
        if counts:
            self._background.spawn(self._listeners_again(counts))

    async def _listeners_again(self, counts: dict[str, int]) -> None:
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for stream_id, count in counts.items():
                    key = self._keys.listeners(stream_id)
                    pipe.hset(key, self._token, count)
                    pipe.expire(key, RUNNING_TTL)
                await pipe.execute()
        except FAILED:
            pass  # the grace period may then end an answer nobody seems to listen to

    async def live(self, stream_ids: list[str]) -> set[str]:
        running = await self._leases.live(stream_ids)
        if len(running) < len(stream_ids):
            await self._epoch.check()
            if self._epoch.lost_within(self._restore_bound()):
                # Redis just lost its data: a stream not yet written back may still run.
                return set(stream_ids)
        return running
