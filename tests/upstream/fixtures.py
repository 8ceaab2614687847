"""Pytest fixtures for the scriptable upstream, and a gateway in front of it.

Register them with ``pytest_plugins = ["upstream.fixtures"]`` (in ``tests/conftest.py``, or in a
test module). One server process serves the whole session, because starting Python and uvicorn
costs a few hundred milliseconds; ``upstream`` resets it before each test so tests stay
independent (no queued behaviours, empty log, default config), and restarts it if a previous
test stopped or killed it. Tests that need a process of their own (to stop it, kill it, or run
two upstreams) use ``make_upstream``. ``gateway`` starts a real gateway whose assistant
``up`` uses given upstreams, and ``answer`` asks it and follows the answer to its end.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from conftest import RunningServer, ServerFactory
from helpers import ask, follow
from typewriter import sse
from upstream.control import Upstream

Gateway = Callable[..., RunningServer]


@pytest.fixture(scope="session")
def upstream_process() -> Iterator[Upstream]:
    """The session's shared upstream process; use ``upstream`` in tests, which resets it."""
    server = Upstream().start()
    yield server
    server.stop()


@pytest.fixture
def upstream(upstream_process: Upstream) -> Upstream:
    """A freshly reset upstream: empty queue and log, any key accepted, model ``test-model``."""
    if not upstream_process.running:
        upstream_process.stop()  # tidy what is left of it
        upstream_process.start()
    upstream_process.reset()
    return upstream_process


@pytest.fixture
def make_upstream() -> Iterator[Callable[[], Upstream]]:
    """Start extra upstream processes; every one is stopped after the test."""
    started: list[Upstream] = []

    def make() -> Upstream:
        server = Upstream().start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def gateway(make_server: ServerFactory) -> Gateway:
    """A gateway whose assistant ``up`` uses the given upstreams in order.

    ``keys`` and ``upstream_settings`` go to every upstream; other keywords configure the
    assistant, except ``headers_timeout`` (every upstream's) and ``retry`` (the policy).
    """

    def make(
        *upstreams: Upstream | str,
        keys: list[str] | None = None,
        upstream_settings: dict[str, Any] | None = None,
        **assistant: Any,
    ) -> RunningServer:
        configs = []
        for i, up in enumerate(upstreams):
            base_url = up if isinstance(up, str) else up.base_url
            configs.append(
                {
                    "name": f"u{i}",
                    "base_url": base_url,
                    "api_keys": keys or [],
                    "headers_timeout": assistant.pop("headers_timeout", 5.0),
                    "bench_seconds": 60,
                    **(upstream_settings or {}),
                }
            )
        retry = assistant.pop("retry", {"deadline": 5, "backoff_initial": 0.05, "backoff_max": 0.2})
        config = {"name": "up", "model": "test-model", **assistant}
        return make_server(upstreams=configs, assistants=[config], retry=retry)

    return make


async def answer(server: RunningServer, message: str = "hi", **fields: Any) -> list[sse.Event]:
    """Ask assistant ``up`` and follow the answer to its ``end``."""
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
        started = await ask(client, message, assistant="up", **fields)
        return await follow(client, started["events_url"])
