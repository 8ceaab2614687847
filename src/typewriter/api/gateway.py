"""The composition root: settings → broker, assistants, chat, open responses.

Built once per app; routes reach it through ``request.app.state.gateway``
(:data:`GatewayDep`), so two apps in one process (tests, benchmarks) never
share state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Annotated

from fastapi import Depends
from starlette.requests import Request

from typewriter import tickets
from typewriter.assistants import Assistant, build_catalog
from typewriter.chat import Chat
from typewriter.config import Settings
from typewriter.errors import TypewriterError, UnknownAssistant
from typewriter.observe.instrument import timed_broker, timed_store
from typewriter.observe.metrics import Metrics
from typewriter.slots import Slots, StreamSlots
from typewriter.store.factory import open_store
from typewriter.store.sql import SqlStore
from typewriter.store.users import UserStore
from typewriter.streams.base import Broker, Control, Lifecycle, StreamLog, UserChannel
from typewriter.streams.factory import create_broker
from typewriter.streams.memory import MemoryBroker

from .auth import CACHE_SECONDS, Authenticator
from .event_stream import OpenStreams
from .rate_limit import RateLimiter, RequestLimiter

__all__ = ["Gateway", "GatewayDep", "get_gateway"]

log = logging.getLogger(__name__)


class Gateway:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        broker = create_broker(
            settings.broker,
            retention=settings.retention,
            lease_timeout=settings.lease_timeout,
            redis_timeout=settings.redis_timeout,
            max_retained_bytes=settings.max_retained_bytes,
            max_retained_bytes_per_user=settings.max_retained_bytes_per_user,
        )
        # The composition root holds the whole broker; the routes reach it by the one job
        # each needs, so a route that follows streams cannot stop or start anything.
        # What they reach is timed for the metrics; the token path is not.
        self.broker: Broker = broker
        if isinstance(broker, MemoryBroker):
            self.metrics.watch_retained(broker.budget)
        timed = timed_broker(broker, self.metrics)
        self.streams: StreamLog = timed
        self.channel: UserChannel = timed
        self.control: Control = timed
        self.health: Lifecycle = broker
        self.catalog = build_catalog(settings, self.metrics)
        self.assistants: Mapping[str, Assistant] = self.catalog.assistants
        self.store: SqlStore | None = timed_store(open_store(settings), self.metrics)
        self.users = UserStore(self.store) if self.store is not None else None
        secret = settings.ticket_secret
        self.auth = Authenticator(
            self.users,
            lambda: tickets.load_secret(
                secret.get_secret_value() if secret else None, settings.data_dir
            ),
            settings.ticket_ttl,
            settings.auth,
        )
        self.rate_limiter, slots = _limits(settings, broker)
        self.chat = Chat(settings, timed, self.assistants, self.store, self.metrics, slots)
        self.open_streams = OpenStreams(self.metrics)
        self._stopping = asyncio.Event()
        self._orphans: asyncio.Task[None] | None = None
        self._revocations: asyncio.Task[None] | None = None

    @property
    def draining(self) -> bool:
        """The server is stopping: ``/readyz`` answers 503 and new asks get ``draining``."""
        return self.chat.draining

    async def drain(self) -> None:
        """The first phase of a graceful stop, while the listening socket stays open.

        Running answers go on, their listeners connected, for up to ``drain_timeout``
        seconds; the rest end ``interrupted`` (text stored, then ``end``). Stop, resumes
        and reads still work meanwhile: with the memory broker only this process can
        serve them. Returns once no answer runs; the server then closes the socket.
        """
        log.info(
            "draining: %d answer(s) running, refusing new ones for up to %g s "
            "(signal again to end them now)",
            self.chat.running,
            self.settings.drain_timeout,
        )
        await self.chat.drain(self.settings.drain_timeout)
        log.info("drained: no answer running")

    def cut_drain(self) -> None:
        """Stop waiting for the answers: those still running end ``interrupted`` now."""
        log.info("drain cut short: ending the running answers now")
        self.chat.cut_drain()

    def begin_shutdown(self) -> None:
        """End open SSE responses now; their clients resume elsewhere with Last-Event-ID."""
        self.open_streams.close_all()

    async def start(self) -> None:
        try:
            await self.broker.start()
        except TypewriterError as exc:  # serve anyway: /readyz says so, requests get 503s
            log.warning("broker not reachable at start: %s", exc.message)
        if self.store is not None:
            version = await self.store.start()
            log.info("conversation store ready (schema version %d)", version)
            await self._recover_answers()
        await self.auth.start()
        if self.users is not None and self.settings.auth != "off":
            self._revocations = asyncio.create_task(self._end_revoked_streams())
        if self.broker.shared:
            self._orphans = asyncio.create_task(self._end_orphans())

    async def _recover_answers(self) -> None:
        """Mark ``interrupted`` the answers no producer is writing any more.

        With replicas, an answer marked ``streaming`` may be generated right now by
        another replica (a rolling restart): the broker knows which. The ones it
        still lists but whose replica died are ended by ``_end_orphans``.
        """
        assert self.store is not None
        try:
            streaming = await self.store.streaming_answers()
            live = await self.broker.live([stream_id for _, stream_id in streaming])
        except TypewriterError as exc:
            log.warning("unfinished answers not checked: %s", exc.message)
            return
        lost = [message_id for message_id, stream_id in streaming if stream_id not in live]
        if lost:
            marked = await self.store.interrupt(lost)
            log.warning("marked %d answers interrupted: their generation stopped", marked)

    async def _end_orphans(self) -> None:
        """Look for answers whose replica died, every tenth of ``lease_timeout``; and once
        a loss of the broker's data has settled, for answers that nobody produces now."""
        interval = self.settings.lease_timeout / 10
        while not self._stopping.is_set():
            try:
                await self.chat.end_orphans()
                if self.store is not None and self.broker.loss_settled():
                    # Redis lost its data: what no producer or listener restored is over.
                    await self._recover_answers()
            except Exception:
                log.exception("ending the answers of a dead replica failed; trying again")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._stopping.wait()

    async def _end_revoked_streams(self) -> None:
        """End the open streams of revoked users, once per key cache period."""
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CACHE_SECONDS):
                    await self._stopping.wait()
            if self._stopping.is_set():
                return
            try:
                await self.auth.end_revoked_streams(self.open_streams)
            except TypewriterError as exc:  # the store is away: the next period tries again
                log.warning("revoked users' streams not checked: %s", exc.message)

    async def stop(self) -> None:
        self._stopping.set()
        self.begin_shutdown()
        await self.chat.shutdown()
        if self.chat.checkpointer is not None:  # a bounded last try for unsaved answers
            await self.chat.checkpointer.stop()
        for task in (self._orphans, self._revocations):
            if task is not None:
                await asyncio.wait((task,), timeout=5.0)
        await self.broker.close()
        for backend in {id(a.backend): a.backend for a in self.assistants.values()}.values():
            await backend.aclose()
        await self.catalog.aclose()
        if self.store is not None:
            await self.store.close()

    def user_of(self, request: Request) -> str:
        """The caller's user id, set by the auth dependency of every /v1 router."""
        user: str = request.state.user
        return user

    def assistant(self, name: str | None = None) -> Assistant:
        """The assistant called ``name``: ``UnknownAssistant`` (422, listing them) if none is;
        with no name, the default one (``default_assistant``, checked at start-up)."""
        if name is None:
            return self.assistants[self.catalog.default]
        assistant = self.assistants.get(name)
        if assistant is None:
            raise UnknownAssistant(name, self.assistants)
        return assistant


def _limits(settings: Settings, broker: Broker) -> tuple[RequestLimiter, StreamSlots]:
    """``requests_per_minute`` and ``max_streams_per_user``: counted in this process, or
    with the Redis broker in Redis, for all replicas at once."""
    local = RateLimiter(settings.requests_per_minute)
    if not broker.shared:
        return local, Slots(settings.max_streams_per_user)
    from typewriter.streams.redis import RedisBroker
    from typewriter.streams.redis.limits import BROKER_KEYS, RedisRateLimiter, RedisSlots

    assert isinstance(broker, RedisBroker)
    timeout = settings.redis_timeout
    rate = RedisRateLimiter(
        broker.redis, BROKER_KEYS, local.limit, fallback=local.hit, timeout=timeout
    )
    lease_ms = int(settings.lease_timeout * 1000)
    local_slots = Slots(settings.max_streams_per_user)
    slots = RedisSlots(
        broker.redis,
        BROKER_KEYS,
        settings.max_streams_per_user,
        fallback=local_slots,
        lease_ms=lease_ms,
        timeout=timeout,
    )
    return rate, slots


async def get_gateway(request: Request) -> Gateway:
    """The app's gateway, for ``Depends``. ``async`` on purpose: FastAPI runs a plain ``def``
    dependency in a worker thread, a thread hop on every request for one attribute read."""
    gateway: Gateway = request.app.state.gateway
    return gateway


GatewayDep = Annotated[Gateway, Depends(get_gateway)]
