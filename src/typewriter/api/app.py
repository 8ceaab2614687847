"""The ASGI application."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from typewriter import __version__
from typewriter.config import Settings, load_settings

from .auth import authenticate
from .error_handlers import install_error_handlers
from .gateway import Gateway
from .header_limit import HeaderLimit
from .limits import enforce_rate_limit, install_cors
from .openapi import install_openapi
from .routes_conversations import router as conversations_router
from .routes_openai import router as openai_router
from .routes_ops import router as ops_router
from .routes_streams import router as streams_router

__all__ = ["create_app"]


def create_app(settings: Settings | None = None) -> FastAPI:
    """A new app with its own broker and state; ``app.state.gateway`` holds them."""
    gateway = Gateway(settings or load_settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The ~130k objects of the loaded framework never die: keep full
        # collections from scanning them again and again under load.
        await gateway.start()
        gc.collect()
        gc.freeze()
        yield
        await gateway.stop()

    app = FastAPI(
        title="typewriter",
        version=__version__,
        summary="Streaming chat gateway: answers typed over Server-Sent Events",
        lifespan=lifespan,
    )
    app.state.gateway = gateway
    install_error_handlers(app)
    install_cors(app, gateway.settings)
    install_openapi(app)
    app.add_middleware(HeaderLimit, max_header_bytes=gateway.settings.max_header_bytes)
    signed_in = [Depends(authenticate), Depends(enforce_rate_limit)]  # in this order
    app.include_router(streams_router, dependencies=signed_in)
    app.include_router(openai_router, dependencies=signed_in)
    app.include_router(conversations_router, dependencies=signed_in)
    app.include_router(ops_router)
    return app
