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
from servers import SERVER_CORE, Server, raise_nofile, running
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


async def run(servers: dict[str, Server], quick: bool) -> Outcome:
    repetitions = 10 if quick else 50
    outcome = Outcome()
    upstream = Upstream().start()
    try:
        os.sched_setaffinity(upstream.process.pid, {SERVER_CORE})  # type: ignore[union-attr]
        settings = {
            "TYPEWRITER_UPSTREAMS": json.dumps([{"name": "u", "base_url": upstream.base_url}]),
            "TYPEWRITER_ASSISTANTS": json.dumps([{"name": "up", "model": "test-model"}]),
            "TYPEWRITER_BUILTIN_ASSISTANTS": "true",
        }
        async with running(("typewriter",), raise_nofile(), settings) as started:
            server = started["typewriter"]
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as http:
                stops = sorted(
                    [await _stop_once(server, upstream, http) * 1000 for _ in range(repetitions)]
                )
            upstream.reset()
            direct, through, simulated = [], [], []
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
                through.append(
                    1000
                    * await _first_text(
                        server.port, "/v1/chat", {"message": "hi", "assistant": "up"}, False
                    )
                )
                simulated.append(
                    1000
                    * await _first_text(
                        server.port, "/v1/chat", {"message": "hi", "assistant": "echo"}, False
                    )
                )
    finally:
        upstream.stop()
    direct.sort()
    through.sort()
    simulated.sort()
    scenario = f"real upstream, {repetitions} runs"
    for label, q in (("p50", 50.0), ("p99", 99.0)):
        outcome.rows.append(
            Row(
                scenario,
                f"Stop → upstream sees disconnect {label}, ms",
                {"typewriter": percentile(stops, q), "sse-starlette": None},
                digits=1,
                higher_is_better=False,
            )
        )
    paths = (
        ("direct to upstream", direct),
        ("through typewriter", through),
        ("typewriter's simulated echo, no upstream", simulated),
    )
    for label, q in (("p50", 50.0), ("p99", 99.0)):
        for path, values in paths:
            outcome.rows.append(
                Row(
                    scenario,
                    f"time to first token {label}, ms: {path}",
                    {"typewriter": percentile(values, q), "sse-starlette": None},
                    digits=2,
                    higher_is_better=False,
                )
            )
    added = percentile(through, 50.0) - percentile(direct, 50.0)
    outcome.notes.append(
        f"real upstream: Stop reached the upstream in p50 {percentile(stops, 50):.1f} ms, "
        f"max {stops[-1]:.1f} ms; typewriter adds {added:.2f} ms to the median time to first "
        "token (upstream and typewriter both on the server core; sse-starlette: n/a)"
    )
    return outcome
