"""The options every command that talks to a gateway takes: where it is, and the key.

Kept apart from the client so that importing the command line (``serve`` too)
does not import it.
"""

from __future__ import annotations

from typing import Annotated

import typer

__all__ = ["DEFAULT_URL", "ApiKey", "Url"]

DEFAULT_URL = "http://127.0.0.1:8000"

Url = Annotated[
    str,
    typer.Option("--url", envvar="TYPEWRITER_URL", metavar="URL", help="the gateway"),
]
ApiKey = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        envvar="TYPEWRITER_API_KEY",
        metavar="KEY",
        help="API key, when the gateway has users",
    ),
]
