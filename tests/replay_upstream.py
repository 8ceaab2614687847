"""An OpenAI-compatible upstream that replays scripted ``delta`` objects: any shape, as sent.

The scriptable upstream (``upstream/server.py``) writes its replies as ``delta.content``
only; reasoning arrives in other fields (``reasoning_content``, ``reasoning``), which this
server sends exactly as a test scripts them, one chunk per delta. It is driven with the same
control client (``upstream.control.Upstream``, started with this file as ``server_path``):
``script`` queues behaviours, ``requests`` reads the log (each record has ``body``), ``reset``
forgets both.

A behaviour: ``{"deltas": [{...}, ...], "delay_ms": pause before each delta (0),
"finish_reason": "stop"}``; with none queued a request gets one ``{"content": "Hello."}``.

Run as ``python tests/replay_upstream.py --port 0``: it prints ``LISTENING <port>``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

SERVER_PATH = Path(__file__)
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class App:
    def __init__(self) -> None:
        self.queue: deque[dict[str, Any]] = deque()
        self.log: list[dict[str, Any]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        route = (scope["method"], scope["path"].rstrip("/"))
        if route == ("POST", "/v1/chat/completions"):
            await self.chat(json.loads(body), send)
        elif route == ("POST", "/_control/script"):
            self.queue.extend(json.loads(body)["behaviours"])
            await _json(send, {"queued": len(self.queue)})
        elif route == ("POST", "/_control/reset"):
            self.queue.clear()
            self.log.clear()
            await _json(send, {})
        elif route == ("GET", "/_control/requests"):
            await _json(send, self.log)
        elif route == ("GET", "/_control/queue"):
            await _json(send, list(self.queue))
        elif route == ("GET", "/v1/models"):
            await _json(send, {"object": "list", "data": []})
        else:
            await _json(send, {"error": {"message": "not served"}}, 404)

    async def chat(self, body: dict[str, Any], send: Send) -> None:
        self.log.append({"index": len(self.log), "body": body, "started": time.time()})
        behaviour = self.queue.popleft() if self.queue else {}
        deltas = behaviour.get("deltas", [{"content": "Hello."}])
        delay = behaviour.get("delay_ms", 0) / 1000
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})

        async def chunk(delta: dict[str, Any], reason: str | None = None) -> None:
            payload = {
                "id": "chatcmpl-replay",
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": body.get("model"),
                "choices": [{"index": 0, "delta": delta, "finish_reason": reason}],
            }
            data = b"data: " + json.dumps(payload).encode() + b"\n\n"
            await send({"type": "http.response.body", "body": data, "more_body": True})

        await chunk({"role": "assistant", "content": ""})
        for delta in deltas:
            if delay:
                await asyncio.sleep(delay)
            await chunk(delta)
        await chunk({}, behaviour.get("finish_reason", "stop"))
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})


async def _json(send: Send, payload: Any, status: int = 200) -> None:
    data = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


@pytest.fixture(scope="module")
def replay() -> Iterator[Any]:
    """A replay upstream for the module's tests (reset before each use by the test)."""
    from upstream.control import Upstream

    server = Upstream(server_path=SERVER_PATH).start()
    try:
        yield server
    finally:
        server.stop()


class _AnnouncingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, port: int) -> None:
        super().__init__(config)
        self.port = port

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            print(f"LISTENING {self.port}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--exit-on-stdin-eof", action="store_true")
    args = parser.parse_args()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    config = uvicorn.Config(
        App(),
        loop="asyncio",
        lifespan="off",
        access_log=False,
        log_config=None,
        log_level="warning",
        timeout_graceful_shutdown=1,
        timeout_keep_alive=300,
    )
    if args.exit_on_stdin_eof:
        threading.Thread(target=_exit_on_stdin_eof, daemon=True).start()
    _AnnouncingServer(config, sock.getsockname()[1]).run(sockets=[sock])


def _exit_on_stdin_eof() -> None:
    while sys.stdin.buffer.read(4096):
        pass
    os.kill(os.getpid(), signal.SIGTERM)


if __name__ == "__main__":
    main()
