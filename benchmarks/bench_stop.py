"""Scenario 4: how fast "Stop generating" reaches the people watching.

(a) An explicit ``POST /v1/streams/{id}/cancel`` on a running answer: time from
sending the cancel to a listener receiving ``end`` with ``cancelled``.
(b) Direct mode: the asker's own response is the stream; closing it is Stop.
A second listener follows the same stream by ``X-Stream-Id``; time from
closing the direct connection to that listener receiving ``end: cancelled``.

Each repetition waits for a first delta on the listener, so the answer is
truly running and the listener truly following when Stop is pressed. The
sse-starlette baseline has neither feature, hence typewriter only.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Awaitable, Callable

import httpx

from loadgen import Connection, open_request
from measure import Outcome, Row, percentile
from servers import Server
from typewriter import sse

__all__ = ["run"]

_BODY = {"message": "Explain SSE.", "options": {"simulate": {"tokens_per_second": 50}}}
_SSE_HEADERS = {"accept": "text/event-stream"}
_TIMEOUT = 10.0


class _Watcher:
    """A listener's view of one stream: when the first delta and the end arrived."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.first_delta: asyncio.Future[None] = loop.create_future()
        self.end: asyncio.Future[tuple[float, str]] = loop.create_future()

    def on_events(self, events: list[sse.Event], received: float) -> None:
        for event in events:
            if event.event == "delta" and not self.first_delta.done():
                self.first_delta.set_result(None)
            elif event.event == "end" and not self.end.done():
                self.end.set_result((received, json.loads(event.data)["finish_reason"]))

    async def follow(self, port: int, path: str) -> Connection:
        return await open_request(
            port, "GET", path, mode="live", headers=_SSE_HEADERS, on_events=self.on_events
        )


async def _cancel_once(server: Server, http: httpx.AsyncClient) -> tuple[float, str]:
    answer = (await http.post("/v1/chat", json=_BODY)).raise_for_status().json()
    watcher = _Watcher()
    listener = await watcher.follow(server.port, answer["events_url"])
    try:
        await asyncio.wait_for(watcher.first_delta, _TIMEOUT)
        pressed = time.time()
        await http.post(f"/v1/streams/{answer['stream_id']}/cancel")
        received, reason = await asyncio.wait_for(watcher.end, _TIMEOUT)
        return received - pressed, reason
    finally:
        listener.close()


async def _disconnect_once(server: Server) -> tuple[float, str]:
    direct = await open_request(
        server.port,
        "POST",
        "/v1/chat",
        mode="idle",
        body=json.dumps(_BODY).encode(),
        headers={"content-type": "application/json", **_SSE_HEADERS},
    )
    listener: Connection | None = None
    try:
        await asyncio.wait_for(direct.head, _TIMEOUT)
        stream_id = direct.headers["x-stream-id"]
        watcher = _Watcher()
        listener = await watcher.follow(server.port, f"/v1/streams/{stream_id}/events")
        await asyncio.wait_for(watcher.first_delta, _TIMEOUT)
        pressed = time.time()
        direct.close()
        received, reason = await asyncio.wait_for(watcher.end, _TIMEOUT)
        return received - pressed, reason
    finally:
        direct.close()
        if listener is not None:
            listener.close()


async def run(servers: dict[str, Server], quick: bool) -> Outcome:
    repetitions = 10 if quick else 50
    server = servers["typewriter"]
    outcome = Outcome()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as http:
        cases: dict[str, Callable[[], Awaitable[tuple[float, str]]]] = {
            "cancel (POST .../cancel)": lambda: _cancel_once(server, http),
            "disconnect (direct mode)": lambda: _disconnect_once(server),
        }
        for name, once in cases.items():
            millis: list[float] = []
            problems: list[str] = []
            for _ in range(repetitions):
                try:
                    seconds, reason = await once()
                except Exception as exc:  # count it, keep measuring
                    problems.append(f"{type(exc).__name__}: {exc}")
                    continue
                if reason != "cancelled":
                    problems.append(f"finish_reason {reason!r}")
                millis.append(seconds * 1000)
            millis.sort()
            outcome.problems += [f"stop, {name}: {p}" for p in problems[:5]]
            for label, q in (("p50", 50.0), ("p99", 99.0)):
                outcome.rows.append(
                    Row(
                        f"stop latency, {repetitions} runs",
                        f"{name} {label}, ms",
                        {"typewriter": percentile(millis, q), "sse-starlette": None},
                        digits=1,
                        verified=not problems,
                        higher_is_better=False,
                    )
                )
            worst = max(millis, default=math.nan)
            outcome.notes.append(
                f"stop, {name}: {len(millis)}/{repetitions} measured, max {worst:.1f} ms; "
                "sse-starlette has no cancel/stop feature (n/a)"
            )
    return outcome
