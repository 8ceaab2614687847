"""A scriptable OpenAI-compatible upstream, run as a real process on a loopback port.

The gateway's failure handling (retries, timeouts, Stop reaching the upstream) can only be
trusted if it is exercised against real HTTP: real headers that arrive late, real connections
that break mid-body, real clients that go away. This server speaks the Chat Completions API
(streaming and not), lets a test queue *behaviours* that the next chat requests will act out,
and records what happened to each request, including when its client went away.

Run it as ``python tests/upstream/server.py --port 0``: it prints exactly one line,
``LISTENING <port>``, to stdout once it accepts connections, and serves until SIGTERM.
``control.py`` wraps this for tests; the module docstring there lists the behaviour keys.
Being run as a script, it imports its neighbours by their plain names: ``behaviours.py``
(validating what is scripted, the reply text), ``exchange.py`` (one response, and breaking
its connection) and ``performance.py`` (acting a behaviour out).

The chat endpoint is raw ASGI, not a framework route, because the point is exact control:
when headers go out, what each body chunk holds, and closing the TCP connection without a
proper end. Every chat request runs two tasks: one producing the response and one awaiting
``receive()`` for ``http.disconnect``, so a client leaving is noticed in every phase (before
headers, before the first token, mid-stream, stalled, or a delayed non-streaming answer) and
production stops at once.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from behaviours import DEFAULT_MODELS, dumps, error_body, validate_behaviour
from exchange import Exchange, Headers, Receive, Scope, Send
from performance import Performance


def bearer_key(headers: Headers) -> str | None:
    for name, value in headers:
        if name == b"authorization":
            text = value.decode("latin-1")
            scheme, _, token = text.partition(" ")
            return token.strip() if scheme.lower() == "bearer" else text
    return None


def new_record(index: int, scope: Scope) -> dict[str, Any]:
    headers: Headers = scope["headers"]
    return {
        "index": index,
        "method": scope["method"],
        "path": scope["path"],
        "model": None,
        "key": bearer_key(headers),
        "headers": {name.decode("latin-1"): value.decode("latin-1") for name, value in headers},
        "body": None,
        "stream": False,
        "behaviour": None,
        "status": None,
        "started": time.time(),
        "headers_sent": None,
        "first_token_sent": None,
        "tokens_sent": 0,
        "completed": False,
        "disconnected": None,
        "dropped": None,
    }


@dataclass
class State:
    """Everything the control endpoints change; one per server process."""

    queue: deque[dict[str, Any]] = field(default_factory=deque)
    log: list[dict[str, Any]] = field(default_factory=list)
    valid_keys: list[str] | None = None
    models: list[str] = field(default_factory=lambda: list(DEFAULT_MODELS))
    strict_models: bool = False

    def config(self) -> dict[str, Any]:
        return {
            "valid_keys": self.valid_keys,
            "models": self.models,
            "strict_models": self.strict_models,
        }


class App:
    """The ASGI application: the OpenAI endpoints under /v1 and the control API under /_control."""

    def __init__(self) -> None:
        self.state = State()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # lifespan is off; nothing else is served
        path: str = scope["path"].rstrip("/") or "/"
        method: str = scope["method"]
        if path == "/v1/chat/completions" and method == "POST":
            await self.chat(scope, receive, send)
            return
        body = await read_body(receive)
        if body is None:
            return
        routes: dict[tuple[str, str], Callable[[Scope, bytes], Awaitable[tuple[int, Any]]]] = {
            ("GET", "/v1/models"): self.list_models,
            ("POST", "/_control/script"): self.control_script,
            ("POST", "/_control/reset"): self.control_reset,
            ("POST", "/_control/config"): self.control_config,
            ("GET", "/_control/config"): self.control_get_config,
            ("GET", "/_control/requests"): self.control_requests,
            ("GET", "/_control/queue"): self.control_queue,
        }
        handler = routes.get((method, path))
        if handler is None:
            known = {p for _, p in routes} | {"/v1/chat/completions"}
            status = 405 if path in known else 404
            await send_json(send, status, error_body(status, f"{method} {path} is not served"))
            return
        try:
            status, payload = await handler(scope, body)
        except ValueError as exc:
            status, payload = 400, error_body(400, str(exc))
        await send_json(send, status, payload)

    # --- OpenAI endpoints -------------------------------------------------------------------

    async def list_models(self, scope: Scope, body: bytes) -> tuple[int, Any]:
        if not self.authorized(bearer_key(scope["headers"])):
            return 401, error_body(401)
        data = [
            {"id": model, "object": "model", "created": 0, "owned_by": "test"}
            for model in self.state.models
        ]
        return 200, {"object": "list", "data": data}

    def authorized(self, key: str | None) -> bool:
        return self.state.valid_keys is None or key in self.state.valid_keys

    async def chat(self, scope: Scope, receive: Receive, send: Send) -> None:
        record = new_record(len(self.state.log), scope)
        self.state.log.append(record)
        raw = await read_body(receive)
        if raw is None:
            record["disconnected"] = time.time()
            return
        exchange = Exchange(record, send)
        watcher = asyncio.create_task(watch_disconnect(receive, exchange))
        producer = asyncio.create_task(self.produce(exchange, raw))
        try:
            done, _ = await asyncio.wait({watcher, producer}, return_when=asyncio.FIRST_COMPLETED)
            if producer not in done and (exchange.finishing or exchange.dropping):
                # The server itself ended or broke the response; let the producer wind up.
                await asyncio.wait({producer})
        finally:
            for task in (producer, watcher):
                task.cancel()
            await asyncio.gather(producer, watcher, return_exceptions=True)
        if not producer.cancelled() and producer.exception() is not None:
            raise producer.exception()  # type: ignore[misc]  # a bug here must be loud

    async def produce(self, exchange: Exchange, raw: bytes) -> None:
        record = exchange.record
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if isinstance(body, dict):
            record["body"] = body
            record["model"] = body.get("model")
            record["stream"] = body.get("stream") is True
        if not self.authorized(record["key"]):
            # Auth comes first, as at OpenAI, and does not consume a scripted behaviour.
            await exchange.respond(401, dumps(error_body(401)), "application/json")
            return
        if not isinstance(body, dict):
            await exchange.respond(
                400, dumps(error_body(400, "body is not a JSON object")), "application/json"
            )
            return
        if self.state.strict_models and body.get("model") not in self.state.models:
            message = f"The model `{body.get('model')}` does not exist."
            await exchange.respond(404, dumps(error_body(404, message)), "application/json")
            return
        behaviour = self.state.queue.popleft() if self.state.queue else {}
        record["behaviour"] = behaviour or None
        await Performance(exchange, body, behaviour).run()

    # --- control endpoints ------------------------------------------------------------------

    async def control_script(self, scope: Scope, body: bytes) -> tuple[int, Any]:
        behaviours = json_object(body).get("behaviours")
        if not isinstance(behaviours, list):
            raise ValueError('expected {"behaviours": [...]}')
        validated = [validate_behaviour(b) for b in behaviours]  # all or nothing
        self.state.queue.extend(validated)
        return 200, {"queued": len(self.state.queue)}

    async def control_reset(self, scope: Scope, body: bytes) -> tuple[int, Any]:
        self.state = State()
        return 200, self.state.config()

    async def control_config(self, scope: Scope, body: bytes) -> tuple[int, Any]:
        update = json_object(body)
        unknown = set(update) - {"valid_keys", "models", "strict_models"}
        if unknown:
            raise ValueError(f"unknown config keys: {sorted(unknown)}")
        if "valid_keys" in update:
            keys = update["valid_keys"]
            if keys is not None and not (
                isinstance(keys, list) and all(isinstance(k, str) for k in keys)
            ):
                raise ValueError("valid_keys must be a list of strings or null")
            self.state.valid_keys = keys
        if "models" in update:
            models = update["models"]
            if not (isinstance(models, list) and all(isinstance(m, str) for m in models)):
                raise ValueError("models must be a list of strings")
            self.state.models = models
        if "strict_models" in update:
            self.state.strict_models = bool(update["strict_models"])
        return 200, self.state.config()

    async def control_get_config(self, scope: Scope, body: bytes) -> tuple[int, Any]:
        return 200, self.state.config()

    async def control_requests(self, scope: Scope, body: bytes) -> tuple[int, Any]:
        return 200, self.state.log

    async def control_queue(self, scope: Scope, body: bytes) -> tuple[int, Any]:
        return 200, list(self.state.queue)


# --- ASGI plumbing ---------------------------------------------------------------------------


def json_object(body: bytes) -> dict[str, Any]:
    if not body.strip():
        return {}
    try:
        value = json.loads(body)
    except ValueError as exc:
        raise ValueError(f"control body is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ValueError("control body must be a JSON object")
    return value


async def read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None if the client went away while sending it."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def watch_disconnect(receive: Receive, exchange: Exchange) -> None:
    """Record the moment the client goes away; returning makes the request's producer stop."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
    if not exchange.finishing and not exchange.dropping:
        exchange.record["disconnected"] = time.time()
    exchange.gone.set()


async def send_json(send: Send, status: int, payload: Any) -> None:
    data = dumps(payload)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data, "more_body": False})


class _AnnouncingServer(uvicorn.Server):
    """Prints the LISTENING line only once uvicorn really accepts connections."""

    def __init__(self, config: uvicorn.Config, port: int) -> None:
        super().__init__(config)
        self.port = port

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            print(f"LISTENING {self.port}", flush=True)


def main(argv: list[str] | None = None, app: Callable[[], App] = App) -> None:
    """Serve ``app()`` (``App``; ``scripted_chaos.py`` passes its own) until SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--exit-on-stdin-eof",
        action="store_true",
        help="shut down when stdin reaches end of file (the parent process went away)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    # Bind ourselves so that --port 0 gives a port we can announce. IPPROTO_TCP explicitly:
    # asyncio sets TCP_NODELAY only on sockets whose proto says TCP, and without it Nagle's
    # algorithm holds each small write (an SSE chunk) back ~40 ms on a kept-alive connection.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app(),
        loop="asyncio",
        http="httptools",
        lifespan="off",
        access_log=False,
        log_config=None,
        log_level="warning",
        # A stalled stream would otherwise hold SIGTERM up until its client leaves.
        timeout_graceful_shutdown=1,
        # The default 5 s lets the server close an idle pooled connection just as a client
        # reuses it, which a gateway would see as a spurious upstream failure.
        timeout_keep_alive=300,
    )
    if args.exit_on_stdin_eof:
        threading.Thread(target=_exit_on_stdin_eof, daemon=True).start()
    _AnnouncingServer(config, port).run(sockets=[sock])


def _exit_on_stdin_eof() -> None:
    """Shut down (as on SIGTERM) once stdin ends: the parent that holds its other end is gone.

    Without this a test run that dies without tearing down (os._exit on a hard timeout,
    SIGKILL) would leave the server running forever.
    """
    while sys.stdin.buffer.read(4096):
        pass
    os.kill(os.getpid(), signal.SIGTERM)


if __name__ == "__main__":
    main()
