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
for the rest. A second signal cuts the drain short: the answers end
``interrupted`` at once (stored, then ``end``) and the server stops; a third
is uvicorn's ``force_exit``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import resource
import socket
from types import FrameType

import uvicorn
from fastapi import FastAPI

from typewriter.api import create_app
from typewriter.api.header_limit import HeadRefusals
from typewriter.api.routes_openai import router as openai_router
from typewriter.config import Settings
from typewriter.http_limits import RequestBounds, bounded_protocol, connection_cap

__all__ = ["GatewayServer", "build_server"]

log = logging.getLogger(__name__)


class GatewayServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self.app = app
        self._signals = 0
        self._drain: asyncio.Task[None] | None = None
        self._cut_asked = False
        self.notes: list[str] = []  # logged once the server starts (logging is set up by then)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """First signal: drain. Second, while draining: end the running answers now (each
        stored and ended ``interrupted``) and stop. Any other: uvicorn's own stop, forced
        once this server began stopping. A signal handler must not touch the event loop,
        so the next tick acts on the first two."""
        serving = self.started and not self.should_exit
        if serving and self._signals == 0:
            pass  # drain: started by on_tick
        elif serving and self._signals == 1:
            self._cut_asked = True
        else:
            super().handle_exit(sig, frame)
            if self._signals:
                self.force_exit = True
        self._signals += 1

    async def on_tick(self, counter: int) -> bool:
        gateway = self.app.state.gateway
        if self._signals and self._drain is None and not self.should_exit:
            self._drain = asyncio.create_task(gateway.drain())
        if self._cut_asked:
            self._cut_asked = False
            gateway.cut_drain()
        if self._drain is not None and self._drain.done():
            self.should_exit = True
        return await super().on_tick(counter)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        for note in self.notes:
            log.warning(note)
        await super().startup(sockets=sockets)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.app.state.gateway.begin_shutdown()
        await super().shutdown(sockets=sockets)


def raise_open_files() -> int:
    """The soft descriptor limit raised to the hard one, as Go's runtime does at start.

    Each open listener holds a descriptor; a soft limit of 1,024 (the usual default) would
    lower ``max_connections`` to 768 where the hard limit allows far more. Returns the
    soft limit in force.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):  # e.g. an unlimited hard limit above fs.nr_open
            return soft
        return hard
    return soft


def build_server(settings: Settings, *, access_log: bool = False) -> GatewayServer:
    app = create_app(settings)
    raise_open_files()
    max_connections, cap_note = connection_cap(settings.max_connections)
    bounds = RequestBounds(
        max_header_bytes=settings.max_header_bytes,
        max_header_lines=settings.max_header_lines,
        max_url_bytes=settings.max_url_bytes,
        header_timeout=settings.header_timeout,
        body_timeout=settings.body_timeout,
        max_connections=max_connections,
    )
    refusals = HeadRefusals(openai_router.routes, app.state.gateway.metrics)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http=bounded_protocol(bounds, refusals),  # httptools, with bounds on heads and time
        # The head timer closes an idle kept-alive connection at header_timeout; uvicorn's
        # own keep-alive timer is set no shorter, so that one setting decides.
        timeout_keep_alive=math.ceil(settings.header_timeout),
        lifespan="on",
        log_level=settings.log_level,
        access_log=access_log,
        proxy_headers=False,  # X-Forwarded-For is read by api.client_address (trusted_proxies)
        log_config=None,  # observe.logs.configure_logging sets up every logger, uvicorn's too
        # 0 means no wait at all: the answers already had ``drain_timeout``.
        timeout_graceful_shutdown=math.ceil(settings.shutdown_timeout),
    )
    server = GatewayServer(config, app)
    if cap_note is not None:
        server.notes.append(cap_note)
    return server
