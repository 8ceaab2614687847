"""The framework's floor: sse-starlette's bare ``EventSourceResponse`` over a generator that
sleeps and yields, with nothing behind it (no log, no replay, no model task, no store).

No real gateway is this simple: it cannot resume, be stopped from elsewhere, or be followed
by a second listener. It is what FastAPI + sse-starlette + uvicorn cost for the events alone,
so the latency scenario's 1,000-stream row can say how far a server is from that floor.

It answers what the latency scenario sends: ``POST /v1/chat`` (an ``echo`` of N four-letter
tokens at ``simulate.tokens_per_second``, with ``timestamps``) names an events URL, and
``GET`` on it streams ``start``, N ``delta`` events whose text is the ``time.time()`` they were
made at, then ``end`` (``stop``), numbered from 1, as typewriter's stream does.

Run: ``python benchmarks/sse_starlette_bare.py --port 8002``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel
from sse_starlette import EventSourceResponse

app = FastAPI(title="sse-starlette, bare (benchmark floor)")


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class SimulateBody(BaseModel):
    tokens_per_second: float = 20.0
    timestamps: bool = True


class OptionsBody(BaseModel):
    simulate: SimulateBody = SimulateBody()


class ChatBody(BaseModel):
    message: str
    assistant: str = "echo"
    options: OptionsBody = OptionsBody()


@app.post("/v1/chat", status_code=202)
async def chat(body: ChatBody) -> dict[str, str]:
    deltas = len(body.message) // 4  # echo answers "abcd" * N as N tokens
    rate = body.options.simulate.tokens_per_second
    return {"events_url": f"/v1/bare/events?deltas={deltas}&rate={rate}"}


async def ticks(deltas: int, rate: float) -> AsyncIterator[dict[str, str]]:
    yield {"id": "1", "event": "start", "data": dumps({"created": int(time.time())})}
    for n in range(deltas):
        await asyncio.sleep(1 / rate)
        yield {"id": str(n + 2), "event": "delta", "data": dumps({"text": repr(time.time())})}
    yield {"id": str(deltas + 2), "event": "end", "data": dumps({"finish_reason": "stop"})}


@app.get("/v1/bare/events")
async def events(deltas: int, rate: float) -> EventSourceResponse:
    return EventSourceResponse(ticks(deltas, rate))


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8002)
    args = parser.parse_args()
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
