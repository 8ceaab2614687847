"""The composition root: settings → broker, assistants, chat, open responses.

Built once per app; routes reach it through ``request.app.state.gateway``,
so two apps in one process (tests, benchmarks) never share state.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from starlette.requests import Request

from typewriter.assistants import Assistant, build_catalog
from typewriter.chat import Chat
from typewriter.config import Settings
from typewriter.store.factory import open_store
from typewriter.store.sql import SqlStore
from typewriter.streams.base import Broker
from typewriter.streams.factory import create_broker

from .event_stream import OpenStreams

__all__ = ["Gateway", "get_gateway"]

log = logging.getLogger(__name__)

LOCAL_USER = "local"


class Gateway:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.broker: Broker = create_broker(settings.broker, retention=settings.retention)
        self.catalog = build_catalog(settings)
        self.assistants: Mapping[str, Assistant] = self.catalog.assistants
        self.store: SqlStore | None = open_store(settings)
        self.chat = Chat(settings, self.broker, self.assistants, self.store)
        self.open_streams = OpenStreams()

    def begin_shutdown(self) -> None:
        """End open SSE responses now; their clients resume elsewhere with Last-Event-ID."""
        self.open_streams.close_all()

    async def start(self) -> None:
        if self.store is not None:
            version = await self.store.start()
            log.info("conversation store ready (schema version %d)", version)

    async def stop(self) -> None:
        self.begin_shutdown()
        await self.chat.shutdown()
        await self.broker.close()
        for backend in {id(a.backend): a.backend for a in self.assistants.values()}.values():
            await backend.aclose()
        await self.catalog.aclose()
        if self.store is not None:
            await self.store.close()

    def user_of(self, request: Request) -> str:
        """The caller's user id: the one local user while auth is off."""
        return LOCAL_USER


def get_gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway
