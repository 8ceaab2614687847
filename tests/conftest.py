"""Shared fixtures: a real uvicorn server on a loopback port, and SSE reading helpers."""

from __future__ import annotations

import threading
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from typewriter import sse
from typewriter.api.gateway import Gateway
from typewriter.config import Settings, load_settings
from typewriter.server import GatewayServer, build_server

pytest_plugins = [
    "upstream.fixtures",
    "web.fixtures",
    "databases",
    "store_fixtures",
    "redis_server",
    "replicas",
    "tcp_proxy",
]


@pytest.fixture(scope="session", autouse=True)
def _temporary_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """No test touches the real platform data directory, nor needs a ``./data``.

    The default ``data_dir`` (the platform's, through ``XDG_DATA_HOME``, which also
    reaches commands run without ``TYPEWRITER_*`` variables) and ``TYPEWRITER_DATA_DIR``
    point into a temporary directory, inherited by every process a test starts.
    """
    data_home = tmp_path_factory.mktemp("xdg-data-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_DATA_HOME", str(data_home))
        patch.setenv("TYPEWRITER_DATA_DIR", str(data_home / "typewriter"))
        yield


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class RunningServer:
    """A gateway serving on 127.0.0.1 in a thread of its own, with its own event loop."""

    server: GatewayServer
    thread: threading.Thread
    url: str

    @property
    def gateway(self) -> Gateway:
        gateway: Gateway = self.server.app.state.gateway
        return gateway

    def stop(self, timeout: float = 15.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "server did not stop"


def start_server(settings: Settings) -> RunningServer:
    server = build_server(settings)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    pause = threading.Event()
    while not server.started and thread.is_alive():
        pause.wait(0.01)  # uvicorn offers no start-up event to wait on across threads
    assert server.started, "server failed to start"
    port = server.servers[0].sockets[0].getsockname()[1]
    return RunningServer(server, thread, f"http://127.0.0.1:{port}")


ServerFactory = Callable[..., RunningServer]


@pytest.fixture
def broker_url(request: pytest.FixtureRequest) -> str:
    """The broker servers get by default: ``memory``, unless a module runs its tests on both.

    ``pytest.mark.parametrize("broker_url", ["memory", "redis"], indirect=True)``
    runs a whole end-to-end module once per broker, each on a fresh Redis.
    """
    kind = getattr(request, "param", "memory")
    if kind == "redis":
        url: str = request.getfixturevalue("redis_url")
        return url
    return "memory"


@pytest.fixture
def make_server(
    tmp_path_factory: pytest.TempPathFactory, broker_url: str
) -> Iterator[ServerFactory]:
    """Start servers with setting overrides; all are stopped after the test.

    Each server keeps its SQLite file in a fresh temporary data directory
    unless the test names a ``database_url`` or ``data_dir``.
    """
    running: list[RunningServer] = []

    def make(**overrides: Any) -> RunningServer:
        overrides.setdefault("data_dir", tmp_path_factory.mktemp("data"))
        overrides.setdefault("broker", broker_url)
        settings = load_settings(port=0, log_level="warning", **overrides)
        server = start_server(settings)
        running.append(server)
        return server

    yield make
    for server in running:
        if server.thread.is_alive():
            server.stop()


@pytest.fixture
def server(make_server: ServerFactory) -> RunningServer:
    return make_server()


@pytest.fixture
async def client(server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30.0) as http:
        yield http


class _EventReader:
    """Keeps one byte iterator and parser per response, so reading can pause and go on."""

    def __init__(self, response: httpx.Response) -> None:
        self.chunks = response.aiter_bytes()
        self.parser = sse.Parser()
        self.pending: list[sse.Event] = []

    async def read(self, limit: int | None) -> list[sse.Event]:
        events: list[sse.Event] = []
        while limit is None or len(events) < limit:
            if self.pending:
                events.append(self.pending.pop(0))
                continue
            try:
                chunk = await anext(self.chunks)
            except StopAsyncIteration:
                events.extend(self.parser.close())
                break
            self.pending.extend(self.parser.feed(chunk))
        return events


_readers: weakref.WeakKeyDictionary[httpx.Response, _EventReader] = weakref.WeakKeyDictionary()


async def read_events(response: httpx.Response, *, limit: int | None = None) -> list[sse.Event]:
    """Parse events off a streaming response; stop after ``limit`` events if given.

    Calling it again on the same response goes on where the last call stopped.
    """
    reader = _readers.get(response)
    if reader is None:
        reader = _readers[response] = _EventReader(response)
    return await reader.read(limit)
