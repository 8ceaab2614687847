"""The way to an upstream from the environment: HTTP(S)_PROXY, NO_PROXY and .netrc.

They are read once when the upstreams are configured (``models/upstream_route.py``), not
on every request; these tests hold the gateway to what reading them on every request gave:
an upstream behind a proxy is reached through it, ``NO_PROXY`` is honoured, and a .netrc
login is sent only when the upstream has no key of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from yarl import URL

from typewriter.models.upstream_route import UpstreamRoute
from upstream.control import Upstream
from upstream.fixtures import Gateway, answer

pytestmark = pytest.mark.integration


class ForwardProxy:
    """A plain-HTTP forward proxy: it reads each connection's first request line (absolute
    form, ``POST http://host:port/path``), records it, and pipes the connection to that
    port on loopback, whatever the host's name (it need not resolve)."""

    def __init__(self) -> None:
        self.request_lines: list[str] = []
        self.authorizations: list[str | None] = []
        self.port = 0
        self._writers: list[asyncio.StreamWriter] = []

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        head = await reader.readuntil(b"\r\n\r\n")
        line, *fields = head.decode("latin-1").split("\r\n")
        self.request_lines.append(line)
        auth = [f.split(":", 1)[1].strip() for f in fields if f.lower().startswith("proxy-auth")]
        self.authorizations.append(auth[0] if auth else None)
        port = URL(line.split(" ")[1]).port
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", port)
        self._writers.append(upstream_writer)
        upstream_writer.write(head)
        await asyncio.gather(
            self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer)
        )

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[ForwardProxy]:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        async with server:
            try:
                yield self
            finally:
                for writer in self._writers:  # kept-alive connections end with the proxy
                    writer.close()
                    with contextlib.suppress(ConnectionError):
                        await writer.wait_closed()


@pytest.mark.anyio
async def test_an_upstream_behind_a_proxy_is_reached_through_it(
    upstream: Upstream, gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with ForwardProxy().running() as proxy:
        monkeypatch.setenv("HTTP_PROXY", f"http://ops:secret@127.0.0.1:{proxy.port}")
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # the test's own client, to the gateway
        monkeypatch.delenv("no_proxy", raising=False)
        # A name only the proxy can reach: without it the gateway could not connect at all.
        hidden = upstream.base_url.replace("127.0.0.1", "model.internal.test")
        server = gateway(hidden)
        events = await answer(server, "through the proxy")
        await answer(server, "and again")  # the route is kept, not used once
    assert events[-1].event == "end"
    assert json.loads(events[-1].data)["finish_reason"] == "stop"
    assert len(proxy.request_lines) == 1, proxy.request_lines  # one kept-alive connection
    assert proxy.request_lines[0].startswith("POST http://model.internal.test:")
    assert proxy.request_lines[0].endswith("/v1/chat/completions HTTP/1.1")
    assert proxy.authorizations[0] == "Basic b3BzOnNlY3JldA=="  # ops:secret
    assert len(upstream.requests()) == 2


def test_no_proxy_names_the_upstreams_reached_directly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "vllm.internal,localhost")
    direct = UpstreamRoute.from_environment("https://vllm.internal/v1")
    proxied = UpstreamRoute.from_environment("https://api.openai.com/v1")
    assert direct.proxy is None
    assert proxied.proxy == URL("http://proxy.example:3128")
    assert proxied.proxy_headers is None  # no login for this proxy


def test_the_proxy_login_goes_on_the_connect_of_an_https_upstream(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://ops:secret@proxy.example:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    route = UpstreamRoute.from_environment("https://api.openai.com/v1")
    assert route.proxy_headers == {"proxy-authorization": "Basic b3BzOnNlY3JldA=="}
    assert "proxy-authorization" not in route.authorize({})  # never to the upstream itself


def test_a_netrc_login_is_sent_only_without_a_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine models.example login team password s3cret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    route = UpstreamRoute.from_environment("https://models.example/v1")
    login = "Basic dGVhbTpzM2NyZXQ="  # team:s3cret
    assert route.authorize({"accept": "text/event-stream"})["authorization"] == login
    # The key the operator configured wins over the file.
    assert route.authorize({"Authorization": "Bearer sk-1"}) == {"Authorization": "Bearer sk-1"}
    assert UpstreamRoute.from_environment("https://other.example/v1").netrc_authorization is None
