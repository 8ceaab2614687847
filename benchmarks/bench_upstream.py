"""Scenario 5: a real model server behind typewriter (typewriter only).

The upstream is the tests' scriptable OpenAI-compatible server
(``tests/upstream/server.py``), a separate process on the server core, so
every figure crosses real sockets twice.

(a) Stop propagation: a slow answer is running (20 tokens/s); a listener has
its first delta; ``POST /v1/streams/{id}/cancel`` is sent. The figure is the
upstream's own record of when its client went away, minus when Stop was sent:
how long the GPU would have kept generating after the user pressed Stop.

(b) Added time to first token: the same request (default reply, no delays)
asked of the upstream directly (``/v1/chat/completions``, streamed) and through
typewriter (``POST /v1/chat`` in direct mode), alternating; time from sending
the request to the first piece of text. The difference is what the gateway adds.
The same through typewriter with its simulated ``echo`` model (no upstream)
separates the gateway's own request handling from the upstream hop.

Each typewriter kind that runs (memory broker, Redis broker) is its own server
in front of the one upstream, measured in turn within each repetition; the
direct-to-upstream figure is the reference for both, so it sits in the memory
column only.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

import httpx

from loadgen import Connection, open_request
from measure import Outcome, Row, percentile
from servers import SERVER_CORE, TYPEWRITER_KINDS, Server, raise_nofile, running
from typewriter import sse

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from upstream.control import Upstream  # noqa: E402

__all__ = ["run"]

_TIMEOUT = 10.0
_SSE = {"accept": "text/event-stream", "content-type": "application/json"}


async def _first_text(port: int, path: str, body: dict[str, object], openai: bool) -> float:
    """Seconds from sending the request to the first non-empty piece of text."""
    loop = asyncio.get_running_loop()
    got: asyncio.Future[float] = loop.create_future()

    def on_events(events: list[sse.Event], received: float) -> None:
        for event in events:
            if got.done() or event.data == "[DONE]":
                continue
            data = json.loads(event.data)
            if openai:
                choices = data.get("choices") or [{}]
                text = (choices[0].get("delta") or {}).get("content")
            else:
                text = data.get("text") if event.event == "delta" else None
            if text:
                got.set_result(received)

    sent = time.time()
    connection: Connection = await open_request(
        port,
        "POST",
        path,
        mode="live",
        body=json.dumps(body).encode(),
        headers=_SSE,
        on_events=on_events,
    )
    try:
        return await asyncio.wait_for(got, _TIMEOUT) - sent
    finally:
        connection.close()


async def _stop_once(server: Server, upstream: Upstream, http: httpx.AsyncClient) -> float:
    upstream.reset()
    upstream.script({"tokens": [f"t{i} " for i in range(2000)], "tokens_per_second": 20})
    answer = (await http.post("/v1/chat", json={"message": "hi", "assistant": "up"})).json()
    first: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def on_events(events: list[sse.Event], received: float) -> None:
        if not first.done() and any(e.event == "delta" for e in events):
            first.set_result(None)

    listener = await open_request(
        server.port,
        "GET",
        answer["events_url"],
        mode="live",
        on_events=on_events,
        headers={"accept": "text/event-stream"},
    )
    try:
        await asyncio.wait_for(first, _TIMEOUT)
        pressed = time.time()
        await http.post(f"/v1/streams/{answer['stream_id']}/cancel")
        record = await asyncio.to_thread(upstream.wait_for_disconnect, 0, _TIMEOUT)
        return float(record["disconnected"]) - pressed
    finally:
        listener.close()


async def run(kinds: tuple[str, ...], quick: bool) -> Outcome:
    repetitions = 10 if quick else 50
    kinds = tuple(kind for kind in kinds if kind in TYPEWRITER_KINDS)
    outcome = Outcome()
    upstream = Upstream().start()
    stops: dict[str, list[float]] = {kind: [] for kind in kinds}
    through: dict[str, list[float]] = {kind: [] for kind in kinds}
    simulated: dict[str, list[float]] = {kind: [] for kind in kinds}
    direct: list[float] = []
    try:
        os.sched_setaffinity(upstream.process.pid, {SERVER_CORE})  # type: ignore[union-attr]
        settings = {
            "TYPEWRITER_UPSTREAMS": json.dumps([{"name": "u", "base_url": upstream.base_url}]),
            "TYPEWRITER_ASSISTANTS": json.dumps([{"name": "up", "model": "test-model"}]),
            "TYPEWRITER_BUILTIN_ASSISTANTS": "true",
        }
        async with running(kinds, raise_nofile(), settings) as started:
            for kind, server in started.items():
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as http:
                    for _ in range(repetitions):
                        stops[kind].append(await _stop_once(server, upstream, http) * 1000)
            upstream.reset()
            openai_body = {
                "model": "test-model",
                "stream": True,
                "messages": [{"role": "user", "content": "hi"}],
            }
            for _ in range(repetitions):
                direct.append(
                    1000
                    * await _first_text(
                        upstream.port or 0, "/v1/chat/completions", openai_body, True
                    )
                )
                for kind, server in started.items():
                    through[kind].append(
                        1000
                        * await _first_text(
                            server.port, "/v1/chat", {"message": "hi", "assistant": "up"}, False
                        )
                    )
                    simulated[kind].append(
                        1000
                        * await _first_text(
                            server.port, "/v1/chat", {"message": "hi", "assistant": "echo"}, False
                        )
                    )
            for server in started.values():
                outcome.problems += [
                    f"{server.kind} log: {line}" for line in server.log_problems()[:5]
                ]
    finally:
        upstream.stop()
    direct.sort()
    for table in (stops, through, simulated):
        for values in table.values():
            values.sort()
    scenario = f"real upstream, {repetitions} runs"

    def row(metric: str, values: dict[str, float | None], digits: int) -> Row:
        return Row(scenario, metric, {"sse-starlette": None, **values}, digits, True, False)

    for label, q in (("p50", 50.0), ("p99", 99.0)):
        outcome.rows.append(
            row(
                f"Stop → upstream sees disconnect {label}, ms",
                {kind: percentile(stops[kind], q) for kind in kinds},
                1,
            )
        )
    for label, q in (("p50", 50.0), ("p99", 99.0)):
        outcome.rows.append(
            row(
                f"time to first token {label}, ms: direct to upstream",
                {"typewriter": percentile(direct, q)},
                2,
            )
        )
        for path, table in (
            ("through typewriter", through),
            ("typewriter's simulated echo, no upstream", simulated),
        ):
            outcome.rows.append(
                row(
                    f"time to first token {label}, ms: {path}",
                    {kind: percentile(table[kind], q) for kind in kinds},
                    2,
                )
            )
    for kind in kinds:
        added = percentile(through[kind], 50.0) - percentile(direct, 50.0)
        outcome.notes.append(
            f"real upstream, {kind}: Stop reached the upstream in p50 "
            f"{percentile(stops[kind], 50):.1f} ms, max {stops[kind][-1]:.1f} ms; typewriter adds "
            f"{added:.2f} ms to the median time to first token"
        )
    outcome.notes.append(
        "real upstream: upstream and typewriter servers all on the server core; the "
        "direct-to-upstream figure is the reference for both brokers; sse-starlette: n/a"
    )
    return outcome
