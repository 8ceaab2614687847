"""The comparison server: typewriter's API shape, hand-built with FastAPI + sse-starlette.

This is what a team would write without typewriter, the usual way: ``POST
/v1/chat`` starts a task that appends the model's pieces to an in-memory log per
stream (a list plus an ``asyncio.Condition`` to wake followers), and ``GET
/v1/streams/{id}/events`` returns sse-starlette's ``EventSourceResponse`` over an
async generator that replays from ``Last-Event-ID`` and then follows, one dict
per event. The token source is typewriter's own ``SimulatedModel``, so the
benchmark compares delivery, not models; event names and JSON data match
typewriter's (start/delta/end) byte for byte.

Run: ``python benchmarks/sse_starlette_app.py --port 8001`` (uvicorn, uvloop,
httptools, one worker, no access log: the same stack typewriter runs on).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import uvicorn
from fastapi import FastAPI, Header, HTTPException
from pydantic import BaseModel
from sse_starlette import EventSourceResponse

from typewriter.messages import ChatMessage
from typewriter.models.base import GenerationOptions, ModelRequest, Simulation
from typewriter.models.simulated import SimulatedModel

app = FastAPI(title="sse-starlette chat (benchmark baseline)")
model = SimulatedModel()


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class StreamLog:
    """Every event of one answer, kept for replay; followers wait on the condition."""

    def __init__(self) -> None:
        self.events: list[tuple[int, str, str]] = []
        self.changed = asyncio.Condition()

    async def append(self, event: str, data: str) -> None:
        async with self.changed:
            self.events.append((len(self.events) + 1, event, data))
            self.changed.notify_all()


streams: dict[str, StreamLog] = {}
generating: set[asyncio.Task[None]] = set()


class SimulateBody(BaseModel):
    tokens_per_second: float | None = None
    first_token_delay_ms: float = 0.0
    timestamps: bool = False


class OptionsBody(BaseModel):
    max_tokens: int | None = None
    simulate: SimulateBody | None = None


class ChatBody(BaseModel):
    message: str
    assistant: str = "default"
    options: OptionsBody = OptionsBody()


async def generate(log: StreamLog, body: ChatBody, message_id: str) -> None:
    """Model → log, then ``end``; listeners never slow this down (they read the log)."""
    sim = body.options.simulate
    request = ModelRequest(
        model=body.assistant,
        messages=(ChatMessage("user", body.message),),
        options=GenerationOptions(
            max_tokens=body.options.max_tokens,
            simulate=Simulation(**sim.model_dump()) if sim is not None else None,
        ),
    )
    end: dict[str, Any] = {"finish_reason": "error", "message_id": message_id}
    try:
        async for chunk in model.stream(request):
            if chunk.text:
                await log.append("delta", dumps({"text": chunk.text}))
            if chunk.finish_reason is not None:
                end["finish_reason"] = chunk.finish_reason
                if chunk.usage is not None:
                    end["usage"] = chunk.usage.to_dict()
    except Exception as exc:  # the stream must still end
        await log.append("error", dumps({"code": "model_error", "message": str(exc)}))
    await log.append("end", dumps(end))


@app.post("/v1/chat", status_code=202)
async def chat(body: ChatBody) -> dict[str, str]:
    if body.assistant not in SimulatedModel.models:
        raise HTTPException(422, f"unknown assistant {body.assistant!r}")
    stream_id = "st_" + secrets.token_urlsafe(16)
    conversation_id = "conv_" + secrets.token_urlsafe(12)
    message_id = "msg_" + secrets.token_urlsafe(12)
    log = streams[stream_id] = StreamLog()
    start = {
        "stream_id": stream_id,
        "conversation_id": conversation_id,
        "message_id": message_id,
        "model": body.assistant,
        "created": int(time.time()),
    }
    await log.append("start", dumps(start))
    task = asyncio.create_task(generate(log, body, message_id))
    generating.add(task)
    task.add_done_callback(generating.discard)
    return {
        "stream_id": stream_id,
        "conversation_id": conversation_id,
        "message_id": message_id,
        "events_url": f"/v1/streams/{stream_id}/events",
    }


async def replay_then_follow(log: StreamLog, after: int) -> AsyncIterator[dict[str, str]]:
    sent = after
    while True:
        async with log.changed:
            while len(log.events) <= sent:
                await log.changed.wait()
            pending = log.events[sent:]
        for seq, event, data in pending:
            yield {"id": str(seq), "event": event, "data": data}
            if event == "end":
                return
        sent = pending[-1][0]


@app.get("/v1/streams/{stream_id}/events")
async def follow(
    stream_id: str, last_event_id: Annotated[str | None, Header()] = None
) -> EventSourceResponse:
    log = streams.get(stream_id)
    if log is None:
        raise HTTPException(404, "no such stream")
    after = int(last_event_id) if last_event_id and last_event_id.isdigit() else 0
    return EventSourceResponse(replay_then_follow(log, after))


@app.get("/v1/events")
async def channel() -> EventSourceResponse:
    """An idle user channel: one ``connected`` event, then only sse-starlette's pings."""

    async def idle() -> AsyncIterator[dict[str, str]]:
        yield {"event": "connected", "data": dumps({"user": "local"})}
        await asyncio.Event().wait()

    return EventSourceResponse(idle())


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
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
