"""``/readyz`` against real failures: an upstream process that goes away, a full disk.

An upstream is shared by every replica, so its outage shows in the body and
leaves the status 200; a store that cannot write is this replica's own problem,
and turns it 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import ServerFactory
from tcp_proxy import TcpProxy
from upstream.control import Upstream

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

CHECK_INTERVAL = 1.0


async def readiness(url: str) -> tuple[int, dict[str, Any]]:
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        response = await client.get("/readyz")
    body: dict[str, Any] = response.json()
    return response.status_code, body


async def test_an_upstream_that_goes_down_is_reported_and_readiness_stays(
    make_upstream: Callable[[], Upstream], make_server: ServerFactory
) -> None:
    upstream = make_upstream()
    # The proxy keeps one address while the upstream process behind it is replaced.
    proxy = TcpProxy("127.0.0.1", upstream.port or 0)
    try:
        server = make_server(
            upstream_check_interval=CHECK_INTERVAL,
            upstreams=[{"name": "gpu-1", "base_url": f"http://{proxy.address}/v1"}],
            assistants=[{"name": "up", "model": "test-model"}],
        )
        status, body = await readiness(server.url)
        assert status == 200 and body["ready"] is True
        assert body["checks"] == {"broker": True, "accepting": True, "store": True}
        assert body["upstreams"]["gpu-1"]["up"] is True

        upstream.stop()
        proxy.cut()
        await asyncio.sleep(CHECK_INTERVAL)
        status, body = await readiness(server.url)
        down = body["upstreams"]["gpu-1"]
        assert status == 200 and body["ready"] is True  # shared by all replicas: not ours
        assert down["up"] is False and "connection failed" in down["error"]
        assert down["since"] == down["checked_at"] and down["consecutive_failures"] == 1
        status, again = await readiness(server.url)  # within the interval: the same check
        assert again["upstreams"]["gpu-1"] == down

        upstream.start()
        proxy.target = ("127.0.0.1", upstream.port or 0)
        proxy.restore()
        await asyncio.sleep(CHECK_INTERVAL)
        status, body = await readiness(server.url)
        back = body["upstreams"]["gpu-1"]
        assert status == 200 and back["up"] is True and back["error"] is None
        assert back["since"] > down["checked_at"] and back["consecutive_failures"] == 0
    finally:
        proxy.close()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs (mounting needs root, as the suite runs here)."""
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)],
        check=True,
        capture_output=True,
    )
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "--lazy", str(mount_point)], check=True)


def fill(disk: Path) -> Path:
    """Write to ``disk`` until it has no byte left."""
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as out, contextlib.suppress(OSError):
        while True:
            out.write(b"\0" * 4096)
    return filler


async def test_a_full_disk_makes_the_replica_unready(
    small_disk: Path, make_server: ServerFactory
) -> None:
    server = make_server(data_dir=small_disk)
    status, body = await readiness(server.url)
    assert status == 200 and body["checks"]["store"] is True

    filler = fill(small_disk)
    status, body = await readiness(server.url)
    assert status == 503 and body["ready"] is False
    assert body["checks"] == {"broker": True, "accepting": True, "store": False}
    async with httpx.AsyncClient(base_url=server.url) as client:
        assert (await client.get("/healthz")).status_code == 200  # alive, only not ready

    filler.unlink()
    status, body = await readiness(server.url)
    assert status == 200 and body["checks"]["store"] is True
