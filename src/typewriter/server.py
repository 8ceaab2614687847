"""Running the app on uvicorn: a graceful stop drains answers before the socket closes.

uvicorn stops accepting connections as soon as a signal sets ``should_exit``,
then waits for open responses before it runs the lifespan shutdown, and an SSE
response never finishes on its own. So the first SIGTERM or SIGINT here does
not set ``should_exit``: it starts :meth:`Gateway.drain`, with the socket still
open, so that running answers go on for up to ``drain_timeout`` with their
listeners connected, Stop and resumes still reach this process, and new asks
get ``503 draining`` with ``Retry-After`` (JSON a client or a proxy can act on,
not a refused connection). When the drain is over, ``should_exit`` is set and
uvicorn closes the socket; the gateway ends the responses still open (channel
listeners, followers of other replicas' answers), whose clients resume
elsewhere with ``Last-Event-ID``, and uvicorn waits up to ``shutdown_timeout``
for the rest. A second signal stops at once (uvicorn's ``force_exit``).
"""

from __future__ import annotations

import asyncio
import math
import socket
from types import FrameType

import uvicorn
from fastapi import FastAPI

from typewriter.api import create_app
from typewriter.config import Settings

__all__ = ["GatewayServer", "build_server"]


class GatewayServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self.app = app
        self.drain_asked = False
        self._drain: asyncio.Task[None] | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """First signal: drain (started by the next tick; a signal handler must not touch
        the loop). Another one, or one before the server started: uvicorn's own stop,
        forced once a drain was asked."""
        if self.started and not self.drain_asked and not self.should_exit:
            self.drain_asked = True
            return
        super().handle_exit(sig, frame)
        if self.drain_asked:
            self.force_exit = True

    async def on_tick(self, counter: int) -> bool:
        if self.drain_asked and self._drain is None:
            self._drain = asyncio.create_task(self.app.state.gateway.drain())
        if self._drain is not None and self._drain.done():
            self.should_exit = True
        return await super().on_tick(counter)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.app.state.gateway.begin_shutdown()
        await super().shutdown(sockets=sockets)


def build_server(settings: Settings, *, access_log: bool = False) -> GatewayServer:
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        log_level=settings.log_level,
        access_log=access_log,
        # 0 means no wait at all: the answers already had ``drain_timeout``.
        timeout_graceful_shutdown=math.ceil(settings.shutdown_timeout),
    )
    return GatewayServer(config, app)
