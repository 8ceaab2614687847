"""Running the app on uvicorn, with shutdown handed to the app explicitly.

uvicorn waits for open responses before it runs the lifespan shutdown, and
an SSE response never finishes on its own. So the server tells the gateway
first (``begin_shutdown``): open streams end cleanly, their clients resume
with ``Last-Event-ID``, and only then does uvicorn wait and shut down.
"""

from __future__ import annotations

import socket

import uvicorn
from fastapi import FastAPI

from typewriter.api import create_app
from typewriter.config import Settings

__all__ = ["GatewayServer", "build_server"]


class GatewayServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self.app = app

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
        log_config=None,  # observe.logs.configure_logging sets up every logger, uvicorn's too
        timeout_graceful_shutdown=int(settings.shutdown_timeout) or None,
    )
    return GatewayServer(config, app)
