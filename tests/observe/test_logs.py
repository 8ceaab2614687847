"""The log of a real ``typewriter serve`` process: access lines, answer lines, JSON.

The server runs with auth on (so requests carry keys and tickets that must never
be logged), an OpenAI-compatible upstream (so httpx is used and must stay quiet)
and the simulated assistants (for a stopped answer).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import read_events
from helpers import add_user, follow, free_port
from typewriter.observe.logs import JsonFormatter
from upstream.control import Upstream

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

STALLED = {"simulate": {"tokens_per_second": 1000, "stall_after_tokens": 2}}


class LoggingServer:
    """``typewriter serve`` with its stderr (the log) kept apart from its stdout."""

    def __init__(self, data_dir: Path, upstream: Upstream, log_format: str) -> None:
        self.url = f"http://127.0.0.1:{(port := free_port())}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("TYPEWRITER_")}
        env |= {
            "TYPEWRITER_DATA_DIR": str(data_dir),
            "TYPEWRITER_UPSTREAMS": json.dumps([{"name": "fake", "base_url": upstream.base_url}]),
            "TYPEWRITER_ASSISTANTS": json.dumps([{"name": "up", "model": "test-model"}]),
            "TYPEWRITER_BUILTIN_ASSISTANTS": "true",
        }
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 - read back by lines()
        command = [sys.executable, "-m", "typewriter", "serve", "--port", str(port)]
        command += ["--log-level", "info", "--log-format", log_format]
        self.process = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=self.stderr
        )

    async def ready(self) -> None:
        async with asyncio.timeout(30), httpx.AsyncClient(base_url=self.url) as client:
            while True:
                assert self.process.poll() is None, self.lines()
                try:
                    if (await client.get("/healthz")).status_code == 200:
                        return
                except httpx.TransportError:
                    await asyncio.sleep(0.05)

    def stop(self) -> list[str]:
        """Stop it (SIGTERM) and return its log lines."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return self.lines()

    def lines(self) -> list[str]:
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace").splitlines()


@pytest.fixture
def start_logging_server(tmp_path: Path, upstream: Upstream) -> Iterator[Any]:
    started: list[LoggingServer] = []

    def start(log_format: str) -> LoggingServer:
        server = LoggingServer(tmp_path, upstream, log_format)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
        server.stderr.close()


async def exercise(server: LoggingServer, key: str) -> dict[str, str]:
    """A normal answer from the upstream followed with its ticket, and a stopped one."""
    await server.ready()
    auth = {"authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=server.url, headers=auth, timeout=30) as client:
        asked = await client.post("/v1/chat", json={"message": "hello", "assistant": "up"})
        assert asked.status_code == 202
        normal = asked.json()
        ticket_url = normal["events_url"]
        assert "ticket=" in ticket_url
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as anonymous:
            events = await follow(anonymous, ticket_url)  # the ticket alone, as EventSource
        assert events[-1].event == "end"
        asked = await client.post(
            "/v1/chat", json={"message": "please stop", "assistant": "echo", "options": STALLED}
        )
        stopped = asked.json()
        async with client.stream("GET", stopped["events_url"]) as response:
            await read_events(response, limit=3)
            stop = await client.post(f"/v1/streams/{stopped['stream_id']}/cancel")
            assert stop.status_code == 202
            await read_events(response)
        wrong = {"authorization": "Bearer no"}
        assert (await client.get("/v1/assistants", headers=wrong)).status_code == 401
    ticket = ticket_url.split("ticket=", 1)[1]
    return {"normal": normal["stream_id"], "stopped": stopped["stream_id"], "ticket": ticket}


def no_secrets(lines: list[str], *secrets: str) -> None:
    for secret in secrets:
        leaked = [line for line in lines if secret in line]
        assert not leaked, leaked


async def test_json_log_has_access_and_answer_lines_and_no_secrets(
    tmp_path: Path, start_logging_server: Any
) -> None:
    key = add_user(tmp_path, "alice")
    server = start_logging_server("json")
    ids = await exercise(server, key)
    lines = server.stop()
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    for record in records:
        assert {"time", "level", "logger", "message"} <= record.keys()
    no_secrets(lines, key, ids["ticket"])
    assert not [r for r in records if r["logger"].startswith(("httpx", "httpcore"))]

    access = [r for r in records if r["logger"] == "typewriter.access"]
    follow_line = next(r for r in access if r["path"].startswith(f"/v1/streams/{ids['normal']}/"))
    assert follow_line["path"] == f"/v1/streams/{ids['normal']}/events"
    assert follow_line["method"] == "GET" and follow_line["status"] == 200
    assert follow_line["user"].startswith("usr_") and follow_line["duration_ms"] > 0
    asks = [r for r in access if r["path"] == "/v1/chat"]
    assert [r["status"] for r in asks] == [202, 202]
    refused = next(r for r in access if r["path"] == "/v1/assistants")
    assert refused["status"] == 401 and refused["user"] is None

    answers = {r["stream_id"]: r for r in records if r["logger"] == "typewriter.answers"}
    normal = answers[ids["normal"]]
    assert normal["finish_reason"] == "stop" and normal["assistant"] == "up"
    assert normal["model"] == "test-model" and normal["user"] == follow_line["user"]
    assert normal["chars"] == len("Hello from the test upstream.") and normal["tokens"] == 5
    assert 0 < normal["first_token_ms"] <= normal["duration_ms"]
    stopped = answers[ids["stopped"]]
    assert stopped["finish_reason"] == "cancelled" and stopped["upstream"] == "simulated"
    # Stopped before the model counted anything: the estimate (token_estimate), 2 + 1.
    assert stopped["chars"] == len("plea" + "se s") and stopped["tokens"] == 3


async def test_text_log_has_one_line_per_request_and_per_answer(
    tmp_path: Path, start_logging_server: Any
) -> None:
    key = add_user(tmp_path, "alice")
    server = start_logging_server("text")
    ids = await exercise(server, key)
    lines = server.stop()
    no_secrets(lines, key, ids["ticket"])
    assert not [line for line in lines if " httpx" in line or " httpcore" in line]
    follows = [line for line in lines if f"GET /v1/streams/{ids['normal']}/events 200" in line]
    assert len(follows) == 1 and "typewriter.access" in follows[0] and " user=usr_" in follows[0]
    ended = [line for line in lines if f"answer {ids['stopped']} ended" in line]
    assert len(ended) == 1
    fields = ("user=usr_", "assistant=echo", "finish_reason=cancelled", "chars=8", "duration_ms=")
    for field in fields:
        assert field in ended[0], ended[0]


def test_a_json_line_keeps_a_traceback_on_its_one_line() -> None:
    try:
        1 / 0  # noqa: B018 - the error is the point
    except ZeroDivisionError:
        record = logging.LogRecord(
            "typewriter.x", logging.ERROR, __file__, 1, "failed on %s", ("GET /",), sys.exc_info()
        )
    record.stream_id = "st_x"
    line = JsonFormatter().format(record)
    assert "\n" not in line
    parsed = json.loads(line)
    assert parsed["message"] == "failed on GET /" and parsed["level"] == "ERROR"
    assert parsed["stream_id"] == "st_x" and "ZeroDivisionError" in parsed["exception"]
