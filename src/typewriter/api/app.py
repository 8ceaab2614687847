"""The ASGI application, and who may call which route.

Each router's dependencies are its policy, so no code matches URLs to decide
one: ``/v1`` routes need an API key and count against the caller's rate limit,
except those that keep an answer going, which are never refused for the rate
(``routes_events``): EventSource's two URLs, which also take a ticket, and Stop.
EventSource's two URLs are answered in front of the router (``events_fast_path``), with
the same sign-in: an idle listener then holds none of the framework's request handling.
The OpenAI routes give their errors in OpenAI's shape (``openai_errors``).
``/metrics`` checks its own token (``routes_metrics``). The access log wraps
everything, the 431 of ``header_limit`` included; only the client's address is
resolved before it (``client_address``), so that it logs the client a trusted
proxy names rather than the proxy.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from typewriter import __version__
from typewriter.config import Settings, load_settings
from typewriter.observe.access_log import AccessLog

from .auth import key_or_ticket, require_key
from .client_address import ClientAddress, TrustedProxies
from .cors import install_cors
from .error_handlers import install_error_handlers
from .events_fast_path import EventRoutes
from .gateway import Gateway
from .header_limit import HeaderLimit
from .openapi import install_openapi
from .rate_limit import enforce_rate_limit
from .routes_chat import router as chat_router
from .routes_conversations import router as conversations_router
from .routes_events import events_router, stop_router
from .routes_health import router as health_router
from .routes_metrics import router as metrics_router
from .routes_openai import router as openai_router
from .routes_page import router as page_router
from .routes_usage import router as usage_router

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
    # Added first: the innermost, inside CORS and the rest (see events_fast_path).
    app.add_middleware(EventRoutes)
    install_cors(app, gateway.settings)
    install_openapi(app)
    app.add_middleware(
        HeaderLimit,
        max_header_bytes=gateway.settings.max_header_bytes,
        openai_routes=openai_router.routes,
        metrics=gateway.metrics,
    )
    app.add_middleware(AccessLog)
    # Added last: the outermost.
    app.add_middleware(ClientAddress, trusted=TrustedProxies(gateway.settings.trusted_proxies))
    signed_in = [Depends(require_key), Depends(enforce_rate_limit)]  # per user, or client
    app.include_router(chat_router, dependencies=signed_in)
    app.include_router(events_router, dependencies=[Depends(key_or_ticket)])
    app.include_router(stop_router, dependencies=[Depends(require_key)])
    app.include_router(openai_router, dependencies=signed_in)
    app.include_router(conversations_router, dependencies=signed_in)
    app.include_router(usage_router, dependencies=signed_in)
    app.include_router(health_router)
    app.include_router(metrics_router)
    app.include_router(page_router)
    return app
