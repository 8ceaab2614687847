"""Helpers for end-to-end tests: ask, follow, and assemble answers over real HTTP."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from conftest import read_events
from typewriter import sse
from typewriter.events import Delta, decode
from typewriter.streams.base import Broker

JSON = {"content-type": "application/json"}


async def ask(client: httpx.AsyncClient, message: str, **fields: Any) -> dict[str, Any]:
    response = await client.post("/v1/chat", json={"message": message, **fields})
    assert response.status_code == 202, response.text
    result: dict[str, Any] = response.json()
    return result


async def follow(
    client: httpx.AsyncClient,
    url: str,
    *,
    last_event_id: str | None = None,
    limit: int | None = None,
) -> list[sse.Event]:
    headers = {"last-event-id": last_event_id} if last_event_id is not None else {}
    async with client.stream("GET", url, headers=headers) as response:
        assert response.status_code == 200, (response.status_code, await response.aread())
        return await read_events(response, limit=limit)


def text_of(events: list[sse.Event]) -> str:
    """The answer's text: its deltas, each read through the one decoder, concatenated."""
    deltas = [decode(e.event, e.data) for e in events if e.event == Delta.name]
    return "".join(d.text for d in deltas if isinstance(d, Delta))


def data_of(event: sse.Event) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(event.data)
    return value


def last(events: list[sse.Event], name: str) -> dict[str, Any]:
    matching = [e for e in events if e.event == name]
    assert matching, f"no {name!r} event in {[e.event for e in events]}"
    return data_of(matching[-1])


def free_port() -> int:
    """A loopback port nobody listens on right now (for servers the tests start)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def typewriter_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The real ``typewriter`` command, with none of the caller's ``TYPEWRITER_*`` settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TYPEWRITER_")}
    return subprocess.run(
        [sys.executable, "-m", "typewriter", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def add_user(data_dir: Path, name: str) -> str:
    """A user made with ``typewriter users add``; returns its API key (printed once)."""
    done = typewriter_cli("users", "add", name, "--data-dir", str(data_dir))
    assert done.returncode == 0, done.stderr
    key = done.stdout.strip()
    assert key.startswith("tw_") and len(key) > 40, key
    return key


async def logged_events(broker: Broker, stream_id: str, owner: str) -> list[tuple[str, Any]]:
    """Every event of a stream straight from its broker, once it has ended: ``(name, fields)``
    read through the one decoder."""
    subscription = await broker.subscribe(stream_id, owner, 0)
    out: list[tuple[str, Any]] = []
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(10):
        while (batch := await subscription.next(loop.time() + 1)) is not None:
            out.extend((name, decode(name, data).fields()) for _, name, data, _ in batch)
    return out


def sigint_as_in_a_terminal() -> None:
    """A child's ``preexec_fn``: Ctrl+C as a terminal gives it. A child inherits an ignored
    SIGINT (a suite run in the background, by nohup or by CI ignores it), and Python then
    never turns Ctrl+C into KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
