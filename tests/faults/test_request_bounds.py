"""A hostile or broken client cannot make the server hold memory, time or descriptors.

``typewriter serve`` runs as a real process (its memory is read from
``/proc``); the clients are raw sockets, so a head can be cut anywhere and a
connection can say nothing at all. What the user sees: a refusal in the
contract's JSON with ``Connection: close`` (431, 414, 408, 503), or, for a
connection that never sent a byte, a plain close; and the server keeps
answering ``/healthz`` throughout.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from helpers import free_port

pytestmark = pytest.mark.anyio

MIB = 1 << 20
CHUNK = 64 * 1024


class Served:
    """``typewriter serve`` in its own process, optionally under a descriptor limit."""

    def __init__(self, data_dir: Path, nofile: int | None = None, **settings: object) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("TYPEWRITER_")}
        env["TYPEWRITER_DATA_DIR"] = str(data_dir)
        for name, value in settings.items():
            env[f"TYPEWRITER_{name.upper()}"] = str(value)
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - read back by the tests
        command = [sys.executable, "-m", "typewriter", "serve", "--port", str(self.port)]

        def limit() -> None:
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        self.process = subprocess.Popen(
            command, env=env, stdout=self.log, stderr=subprocess.STDOUT, preexec_fn=limit
        )

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def rss(self) -> int:
        """The server's resident memory, in bytes."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    def ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.url) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise AssertionError(f"the server exited:\n{self.output()}")
                try:
                    if client.get("/healthz").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
        raise AssertionError(f"the server did not start:\n{self.output()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)
        self.log.close()


@dataclass
class Servers:
    bounded: Served  # 256 descriptors, as in the report; default limits otherwise
    hasty: Served  # header_timeout and body_timeout of 1 s


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    """Both started at once: a start costs seconds on a busy machine."""
    bounded = Served(tmp_path_factory.mktemp("bounded"), nofile=256, header_timeout=30)
    hasty = Served(tmp_path_factory.mktemp("hasty"), header_timeout=1, body_timeout=1)
    try:
        bounded.ready()
        hasty.ready()
        yield Servers(bounded, hasty)
    finally:
        bounded.stop()
        hasty.stop()


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def error(self, *, openai: bool = False) -> dict[str, Any]:
        assert self.headers["content-type"] == "application/json", self.headers
        assert self.headers["connection"] == "close", self.headers
        parsed: dict[str, Any] = json.loads(self.body)
        keys = {"code", "message", "type", "param"} if openai else {"code", "message"}
        assert set(parsed) == {"error"} and set(parsed["error"]) == keys, parsed
        return parsed["error"]


def parse(data: bytes) -> Reply:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Reply(int(lines[0].split()[1]), headers, body)


@asynccontextmanager
async def connection(served: Served) -> AsyncIterator[tuple[asyncio.StreamReader, Any]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    try:
        yield reader, writer
    finally:
        writer.close()


async def stream_until_answered(
    served: Served, head: bytes, filler: bytes, most: int
) -> tuple[Reply | None, int]:
    """Send ``head`` then ``filler`` again and again (up to ``most`` bytes) until the
    server's first byte arrives; returns what the server answered, if anything, and how
    much was sent by then (the server drains what follows for a second before it
    closes: counting that would measure the client's speed, not the server's bound)."""
    async with connection(served) as (reader, writer):
        writer.write(head)
        sent = len(head)
        first = asyncio.create_task(reader.read(1))
        try:
            while sent < most and not first.done():
                writer.write(filler)
                sent += len(filler)
                try:
                    await writer.drain()
                except ConnectionError:
                    break
                await asyncio.sleep(0)  # drain() does not yield while the socket takes it all
            data = await asyncio.wait_for(first, 5)
            data += await asyncio.wait_for(reader.read(), 5)
        except (TimeoutError, ConnectionError):
            return None, sent
        finally:
            first.cancel()
        return (parse(data) if data else None), sent


async def healthz_latencies(served: Served, until: asyncio.Event) -> list[float]:
    latencies = []
    async with httpx.AsyncClient(base_url=served.url, timeout=30) as client:
        while not until.is_set():
            began = time.monotonic()
            assert (await client.get("/healthz")).status_code == 200
            latencies.append(time.monotonic() - began)
            await asyncio.sleep(0.02)
    return latencies


async def test_an_endless_head_is_refused_with_431_and_memory_stays_flat(servers: Servers) -> None:
    served = servers.bounded
    before = served.rss()
    head = b"GET /healthz HTTP/1.1\r\nhost: x\r\n"
    lines = b"".join(b"x-filler-%05d: %s\r\n" % (i, b"v" * 40) for i in range(1200))
    reply, sent = await stream_until_answered(served, head, lines, 64 * MIB)
    assert reply is not None, f"no answer after {sent} bytes of header lines"
    assert reply.status == 431 and reply.error()["code"] == "headers_too_large"
    assert sent < 32 * MIB, sent  # socket buffers hold a few MiB
    assert served.rss() - before < 16 * MIB, (before, served.rss())

    # One header value that never ends, with /healthz asked all along on another connection.
    done = asyncio.Event()
    latencies = asyncio.create_task(healthz_latencies(served, done))
    head = b"GET /v1/models HTTP/1.1\r\nhost: x\r\nx-value: "
    reply, sent = await stream_until_answered(served, head, b"a" * CHUNK, 64 * MIB)
    await asyncio.sleep(0.2)
    done.set()
    assert reply is not None, f"no answer after {sent} bytes of one header value"
    assert reply.status == 431  # in OpenAI's shape: an OpenAI route would have taken it
    assert reply.error(openai=True)["code"] == "headers_too_large"
    assert sent < 32 * MIB, sent  # socket buffers hold a few MiB
    assert max(await latencies) < 0.5
    assert served.rss() - before < 16 * MIB, (before, served.rss())


async def test_a_url_beyond_max_url_bytes_is_refused_with_414(servers: Servers) -> None:
    served = servers.bounded
    reply, sent = await stream_until_answered(
        served, b"GET /v1/assistants?q=", b"a" * CHUNK, 16 * MIB
    )
    assert reply is not None, f"no answer after {sent} bytes of URL"
    assert reply.status == 414 and reply.error()["code"] == "url_too_long"
    assert sent < 32 * MIB, sent
    async with connection(served) as (reader, writer):  # a long one within bounds still passes
        writer.write(
            b"GET /healthz?q=" + b"a" * 8000 + b" HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
        )
        assert parse(await asyncio.wait_for(reader.read(), 5)).status == 200


async def closed_after(reader: asyncio.StreamReader) -> tuple[float, bytes]:
    began = time.monotonic()
    data = await asyncio.wait_for(reader.read(), 5)
    return time.monotonic() - began, data


async def test_silent_half_sent_and_idle_connections_are_dropped(servers: Servers) -> None:
    served = servers.hasty
    async with (
        connection(served) as (silent, _),
        connection(served) as (half_head, half_head_w),
        connection(served) as (half_body, half_body_w),
        connection(served) as (idle, idle_w),
    ):
        half_head_w.write(b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-partial: ab")
        half_body_w.write(
            b"POST /v1/chat HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b"content-length: 100\r\n\r\n" + b'{"message": "'
        )
        idle_w.write(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        first = await asyncio.wait_for(idle.readuntil(b"\r\n\r\n"), 5)
        assert first.startswith(b"HTTP/1.1 200")
        results = await asyncio.gather(
            closed_after(silent),
            closed_after(half_head),
            closed_after(half_body),
            closed_after(idle),
        )
    (silent_s, silent_data), (head_s, head_data), (body_s, body_data), (idle_s, idle_data) = results
    assert silent_data == b"" and silent_s < 2
    assert parse(head_data).status == 408 and parse(head_data).error()["code"] == "request_timeout"
    assert head_s < 2
    assert parse(body_data).status == 408 and parse(body_data).error()["code"] == "request_timeout"
    assert body_s < 2
    assert b"HTTP/1.1" not in idle_data and idle_s < 2  # the rest of /healthz's body, then the end
    async with httpx.AsyncClient(base_url=served.url) as client:
        assert (await client.get("/healthz")).status_code == 200


async def test_beyond_max_connections_a_clean_503_and_healthz_still_served(
    servers: Servers,
) -> None:
    # 256 descriptors, as in the report: max_connections (10 000) is lowered to what they allow.
    served = servers.bounded
    async with (
        httpx.AsyncClient(base_url=served.url, timeout=10) as client,
        httpx.AsyncClient(base_url=served.url, timeout=10) as listener,
    ):
        kept = await client.get("/healthz")  # a kept-alive connection, opened first
        assert kept.status_code == 200
        async with listener.stream("GET", "/v1/events") as events:  # an SSE listener: one more
            assert events.status_code == 200
            held = [await asyncio.open_connection("127.0.0.1", served.port) for _ in range(190)]
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
                writer.write(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
                refused = parse(await asyncio.wait_for(reader.read(), 5))
                writer.close()
                assert refused.status == 503, refused
                assert refused.error()["code"] == "too_many_connections"
                assert refused.headers["retry-after"] == "1"
                # Connections already open go on being served.
                assert (await client.get("/healthz")).status_code == 200
            finally:
                for _, w in held:
                    w.close()
        async with asyncio.timeout(5):  # and once the crowd has gone, new ones are served
            while True:
                try:
                    async with httpx.AsyncClient(base_url=served.url) as fresh:
                        if (await fresh.get("/healthz")).status_code == 200:
                            break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.05)
    assert "max_connections lowered from 10000 to 192" in served.output()  # said once
    assert served.output().count("max_connections lowered") == 1


async def test_a_head_within_the_limits_passes_however_it_is_cut(servers: Servers) -> None:
    served = servers.bounded
    head = b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\nx-big: " + b"a" * 30_000
    head += b"\r\n\r\n"
    async with connection(served) as (reader, writer):
        for start in range(0, len(head), 1000):  # in pieces the server reads one by one
            writer.write(head[start : start + 1000])
            await writer.drain()
            await asyncio.sleep(0.001)
        assert parse(await asyncio.wait_for(reader.read(), 5)).status == 200
    lines = b"".join(b"x-h%d: v\r\n" % i for i in range(101))  # one line too many
    async with connection(served) as (reader, writer):
        writer.write(b"GET /healthz HTTP/1.1\r\n" + lines + b"\r\n")
        reply = parse(await asyncio.wait_for(reader.read(), 5))
        assert reply.status == 431 and reply.error()["code"] == "headers_too_large"
