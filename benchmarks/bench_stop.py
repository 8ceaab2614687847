"""Scenario 4: how fast "Stop generating" reaches the people watching.

(a) An explicit ``POST /v1/streams/{id}/cancel`` on a running answer: time from
sending the cancel to a listener receiving ``end`` with ``cancelled``.
(b) Direct mode: the asker's own response is the stream; closing it is Stop.
A second listener follows the same stream by ``X-Stream-Id``; time from
closing the direct connection to that listener receiving ``end: cancelled``.

Each repetition waits for a first delta on the listener, so the answer is
truly running and the listener truly following when Stop is pressed. The
sse-starlette baseline has neither feature, hence typewriter only: with the
memory broker and, when it runs, the Redis broker (there Stop travels as a
pub/sub message and ``end`` through the stream's follower), alternating
repetition by repetition so a noisy moment does not fall on one broker only.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import math
import time
from collections.abc import Awaitable, Callable

import httpx

from loadgen import Connection, open_request
from measure import Outcome, Row, percentile
from servers import TYPEWRITER_KINDS, Server
from typewriter import sse

__all__ = ["run"]

_BODY = {"message": "Explain SSE.", "options": {"simulate": {"tokens_per_second": 50}}}
_SSE_HEADERS = {"accept": "text/event-stream"}
_TIMEOUT = 10.0
_CANCEL = "cancel (POST .../cancel)"
_DISCONNECT = "disconnect (direct mode)"


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
    outcome = Outcome()
    kinds = [kind for kind in TYPEWRITER_KINDS if kind in servers]
    millis: dict[tuple[str, str], list[float]] = {}
    problems: dict[tuple[str, str], list[str]] = {}
    async with contextlib.AsyncExitStack() as stack:
        cases: dict[tuple[str, str], Callable[[], Awaitable[tuple[float, str]]]] = {}
        for kind in kinds:
            server = servers[kind]
            http = await stack.enter_async_context(
                httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}")
            )
            cases[kind, _CANCEL] = functools.partial(_cancel_once, server, http)
            cases[kind, _DISCONNECT] = functools.partial(_disconnect_once, server)
        for repetition in range(repetitions):
            order = kinds if repetition % 2 == 0 else kinds[::-1]
            for name in (_CANCEL, _DISCONNECT):
                for kind in order:
                    found = millis.setdefault((kind, name), [])
                    failed = problems.setdefault((kind, name), [])
                    try:
                        seconds, reason = await cases[kind, name]()
                    except Exception as exc:  # count it, keep measuring
                        failed.append(f"{type(exc).__name__}: {exc}")
                        continue
                    if reason != "cancelled":
                        failed.append(f"finish_reason {reason!r}")
                    found.append(seconds * 1000)
    for name in (_CANCEL, _DISCONNECT):
        verified = not any(problems[kind, name] for kind in kinds)
        for kind in kinds:
            millis[kind, name].sort()
            outcome.problems += [f"stop, {kind}, {name}: {p}" for p in problems[kind, name][:5]]
            worst = max(millis[kind, name], default=math.nan)
            outcome.notes.append(
                f"stop, {name}, {kind}: {len(millis[kind, name])}/{repetitions} measured, "
                f"max {worst:.1f} ms"
            )
        for label, q in (("p50", 50.0), ("p99", 99.0)):
            values: dict[str, float | None] = {"sse-starlette": None}
            values.update({kind: percentile(millis[kind, name], q) for kind in kinds})
            outcome.rows.append(
                Row(
                    f"stop latency, {repetitions} runs",
                    f"{name} {label}, ms",
                    values,
                    digits=1,
                    verified=verified,
                    higher_is_better=False,
                )
            )
    outcome.notes.append("stop: sse-starlette has no cancel/stop feature (n/a)")
    return outcome
