"""An nginx on the same host, with auth off: each client it forwards has its own limits.

nginx connects from 127.0.0.1, in ``trusted_proxies`` by default, and names the
client in ``X-Forwarded-For`` (``$proxy_add_x_forwarded_for``). Without that, every
client behind it would be the one loopback peer: exempt from every limit, or with
``limit_loopback`` all sharing one. The server block is the documented one
(``tests/nginx_proxy.py``), with the header line added if the document lacks it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from conftest import ServerFactory
from helpers import free_port
from nginx_proxy import site_config, start_site

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

FORWARDED_FOR = "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;"


def forwarding_site(upstream: str, port: int) -> str:
    block = site_config([upstream, upstream], port)
    if FORWARDED_FOR not in block:
        documented = "proxy_pass http://typewriter;"
        assert documented in block, f"the documented block should say `{documented}`"
        block = block.replace(documented, f"{documented}\n        {FORWARDED_FOR}")
    return block


@asynccontextmanager
async def client_from(url: str, source: str) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.AsyncHTTPTransport(local_address=source)
    async with httpx.AsyncClient(base_url=url, transport=transport, timeout=30) as client:
        yield client


async def statuses(client: httpx.AsyncClient, n: int) -> list[int]:
    return [(await client.get("/v1/assistants")).status_code for _ in range(n)]


async def test_clients_behind_a_local_nginx_are_limited_each_on_its_own(
    make_server: ServerFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="typewriter.access")
    server = make_server(requests_per_minute=2)
    upstream = server.url.removeprefix("http://")
    port = free_port()
    nginx = start_site(tmp_path / "nginx", forwarding_site(upstream, port), port)
    try:
        async with (
            client_from(nginx.url, "127.0.0.2") as ann,
            client_from(nginx.url, "127.0.0.3") as bob,
            httpx.AsyncClient(base_url=server.url, timeout=30) as direct,
        ):
            assert await statuses(ann, 3) == [200, 200, 429]
            assert await statuses(bob, 3) == [200, 200, 429]
            # The operator's own script, straight to the server, is not limited.
            assert await statuses(direct, 4) == [200] * 4
    finally:
        nginx.stop()

    logged = [
        (getattr(r, "client", None), getattr(r, "status", None))
        for r in caplog.records
        if r.name == "typewriter.access"
    ]
    # The access log names the client nginx forwarded, not nginx.
    assert logged.count(("127.0.0.2", 200)) == 2 and logged.count(("127.0.0.2", 429)) == 1
    assert logged.count(("127.0.0.3", 429)) == 1
    assert logged.count(("127.0.0.1", 200)) == 4
