"""Pytest fixtures for the scriptable upstream.

Register them with ``pytest_plugins = ["upstream.fixtures"]`` (in ``tests/conftest.py``, or in a
test module). One server process serves the whole session, because starting Python and uvicorn
costs a few hundred milliseconds; ``upstream`` resets it before each test so tests stay
independent (no queued behaviours, empty log, default config), and restarts it if a previous
test stopped or killed it. Tests that need a process of their own (to stop it, kill it, or run
two upstreams) use ``make_upstream``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from upstream.control import Upstream


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
