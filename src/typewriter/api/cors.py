"""CORS for browsers on other origins: off unless ``cors_origins`` lists some."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from typewriter.config import Settings

__all__ = ["install_cors"]

CORS_METHODS = ("GET", "POST", "PATCH", "DELETE", "OPTIONS")
CORS_HEADERS = ("Authorization", "Content-Type", "Last-Event-ID", "Accept")
# What a page's script may read: the stream of a direct answer, the events URL of a
# detached one, and how long to wait after a 429.
CORS_EXPOSED = ("X-Stream-Id", "Location", "Retry-After")


def install_cors(app: FastAPI, settings: Settings) -> None:
    """Let pages on ``settings.cors_origins`` call the API; with none, add nothing.

    Off by default: a page on another origin then cannot read any answer,
    which is the safe default for a server holding people's conversations.
    Origins are matched exactly (scheme, host and port); a trailing ``/`` in the
    setting is dropped because browsers never send one. No cookies are involved
    (keys travel in ``Authorization``, tickets in the URL), so credentials stay
    off and a listed origin may not send cookies along.
    """
    origins = [o.strip().rstrip("/") for o in settings.cors_origins if o.strip()]
    if not origins:
        return
    app.add_middleware(
        CORSMiddleware,
        allow_origins=origins,
        allow_methods=list(CORS_METHODS),
        allow_headers=list(CORS_HEADERS),
        expose_headers=list(CORS_EXPOSED),
        allow_credentials=False,
        max_age=600,
    )
