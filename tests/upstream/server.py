"""A scriptable OpenAI-compatible upstream, run as a real process on a loopback port.

The gateway's failure handling (retries, timeouts, Stop reaching the upstream) can only be
trusted if it is exercised against real HTTP: real headers that arrive late, real connections
that break mid-body, real clients that go away. This server speaks the Chat Completions API
(streaming and not), lets a test queue *behaviours* that the next chat requests will act out,
and records what happened to each request, including when its client went away.

Run it as ``python tests/upstream/server.py --port 0``: it prints exactly one line,
``LISTENING <port>``, to stdout once it accepts connections, and serves until SIGTERM.
``control.py`` wraps this for tests; the module docstring there lists the behaviour keys.

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
import re
import signal
import socket
import struct
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import uvicorn

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Header = tuple[bytes, bytes]
Headers = list[Header]

DEFAULT_REPLY = "Hello from the test upstream."
DEFAULT_MODELS = ("test-model",)
DEFAULT_TOKENS_PER_SECOND = 1000.0
ECHO_PIECE = 4
ECHO_MESSAGES_PIECE = 16
MALFORMED_EVENT = b"data: {not json\n\n"
DROP_FLUSH_TIMEOUT = 5.0

TRIGGERS = (
    "drop_after_tokens",
    "stall_after_tokens",
    "malformed_after_tokens",
    "error_after_tokens",
)
TEXT_SOURCES = ("tokens", "echo", "echo_messages")
BEHAVIOUR_KEYS = frozenset(
    {
        "status",
        "retry_after",
        "body",
        "content_type",
        "headers",
        "delay_headers_ms",
        "delay_first_token_ms",
        "tokens_per_second",
        "drop_mode",
        "error_message",
        "error_done",
        "finish_reason",
        "usage",
        *TRIGGERS,
        *TEXT_SOURCES,
    }
)

# OpenAI's error bodies for the statuses tests use most; others get a generic one.
ERRORS: dict[int, tuple[str, str, str | None]] = {
    400: ("Invalid request.", "invalid_request_error", None),
    401: ("Incorrect API key provided", "invalid_request_error", "invalid_api_key"),
    403: ("You are not allowed to access this resource.", "permission_error", None),
    404: ("The model does not exist or you do not have access to it.", "invalid_request_error",
          "model_not_found"),
    429: ("Rate limit reached for requests", "requests", "rate_limit_exceeded"),
    500: ("The server had an error while processing your request. Sorry about that!",
          "server_error", None),
    503: ("The engine is currently overloaded, please try again later.", "server_error", None),
}  # fmt: skip


def error_body(status: int, message: str | None = None) -> dict[str, Any]:
    """OpenAI's error envelope, so the gateway's error parsing meets the real shape."""
    default_message, kind, code = ERRORS.get(
        status,
        (
            f"Upstream error {status}",
            "server_error" if status >= 500 else "invalid_request_error",
            None,
        ),
    )
    return {
        "error": {
            "message": message if message is not None else default_message,
            "type": kind,
            "param": None,
            "code": code,
        }
    }


def validate_behaviour(raw: Any) -> dict[str, Any]:
    """Reject typos and contradictions when scripted, not when a request meets them later."""
    if not isinstance(raw, dict):
        raise ValueError(f"a behaviour must be an object, got {raw!r}")
    unknown = set(raw) - BEHAVIOUR_KEYS
    if unknown:
        raise ValueError(f"unknown behaviour keys: {sorted(unknown)}")
    triggers = [key for key in TRIGGERS if raw.get(key) is not None]
    if len(triggers) > 1:
        raise ValueError(f"at most one of {list(TRIGGERS)} per behaviour, got {triggers}")
    sources = [key for key in TEXT_SOURCES if raw.get(key) not in (None, False)]
    if len(sources) > 1:
        raise ValueError(f"at most one of {list(TEXT_SOURCES)} per behaviour, got {sources}")
    for key in (*TRIGGERS, "delay_headers_ms", "delay_first_token_ms", "tokens_per_second"):
        value = raw.get(key)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int | float) or value < 0
        ):
            raise ValueError(f"{key} must be a number >= 0, got {value!r}")
    if "status" in raw and not (isinstance(raw["status"], int) and 100 <= raw["status"] < 600):
        raise ValueError(f"status must be an HTTP status code, got {raw['status']!r}")
    tokens = raw.get("tokens")
    if tokens is not None and not (
        isinstance(tokens, list) and all(isinstance(t, str) for t in tokens)
    ):
        raise ValueError("tokens must be a list of strings")
    if raw.get("drop_mode", "fin") not in ("fin", "rst"):
        raise ValueError("drop_mode must be 'fin' or 'rst'")
    headers = raw.get("headers", {})
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise ValueError("headers must map names to string values")
    usage = raw.get("usage", {})
    if usage is not None and not isinstance(usage, dict):
        raise ValueError("usage must be an object or null")
    return dict(raw)


def split_words(text: str) -> list[str]:
    """Words with their trailing whitespace: how the default reply is cut into deltas."""
    return re.findall(r"\S+\s*", text)


def pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def content_text(content: Any) -> str:
    """A message's text, whether content is a string or a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part.get("text", "")
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def reply_tokens(behaviour: dict[str, Any], body: dict[str, Any]) -> list[str]:
    messages = body.get("messages")
    messages = messages if isinstance(messages, list) else []
    if behaviour.get("tokens") is not None:
        return list(behaviour["tokens"])
    if behaviour.get("echo"):
        users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
        return pieces(content_text(users[-1].get("content")) if users else "", ECHO_PIECE)
    if behaviour.get("echo_messages"):
        return pieces(json.dumps(messages), ECHO_MESSAGES_PIECE)
    return split_words(DEFAULT_REPLY)


def prompt_token_count(body: dict[str, Any]) -> int:
    """A deterministic stand-in for a tokenizer: words across all message contents."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return 0
    return sum(len(content_text(m.get("content")).split()) for m in messages if isinstance(m, dict))


def bearer_key(headers: Headers) -> str | None:
    for name, value in headers:
        if name == b"authorization":
            text = value.decode("latin-1")
            scheme, _, token = text.partition(" ")
            return token.strip() if scheme.lower() == "bearer" else text
    return None


def transport_of(send: Send) -> asyncio.Transport | None:
    """The connection's transport, to close it without ending the HTTP response properly.

    ASGI has no way to say "break this connection", and uvicorn answers a request whose app
    failed before starting a response with a clean 500. uvicorn's ``send`` is a bound method
    of its request/response cycle, which holds the transport; that is what we reach for.
    """
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    return transport if isinstance(transport, asyncio.BaseTransport) else None  # type: ignore[return-value]


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


class Exchange:
    """One chat request's response side: what was sent, and whether it ended or broke."""

    def __init__(self, record: dict[str, Any], send: Send) -> None:
        self.record = record
        self._send = send
        self.transport = transport_of(send)
        self.finishing = False
        self.dropping = False
        self.gone = asyncio.Event()

    async def start(self, status: int, headers: Headers) -> None:
        self.record["status"] = status
        await self._send({"type": "http.response.start", "status": status, "headers": headers})
        self.record["headers_sent"] = time.time()

    async def body(self, data: bytes) -> None:
        await self._send({"type": "http.response.body", "body": data, "more_body": True})

    async def finish(self, data: bytes = b"") -> None:
        # Set first: uvicorn reports http.disconnect to receive() once a response completes.
        self.finishing = True
        await self._send({"type": "http.response.body", "body": data, "more_body": False})
        self.record["completed"] = True

    async def respond(
        self, status: int, body: bytes, content_type: str, extra: Sequence[Header] = ()
    ) -> None:
        headers = [
            (b"content-type", content_type.encode("latin-1")),
            (b"content-length", str(len(body)).encode("ascii")),
            *extra,
        ]
        await self.start(status, headers)
        await self.finish(body)

    async def drop(self, mode: str) -> None:
        """Close the TCP connection mid-response: no terminating chunk, no complete body.

        ``fin``: data already written is flushed, then the connection is closed, so the client
        reads every delta sent and then an incomplete body. ``rst``: SO_LINGER 0 and abort, so
        the kernel sends a reset; the client may lose data it had not read yet.
        """
        self.dropping = True
        self.record["dropped"] = time.time()
        transport = self.transport
        if transport is None:
            # Not uvicorn's cycle: fall back to an exception, which uvicorn turns into a
            # closed connection once the response has started (and a 500 before).
            raise ConnectionAbortedError("drop requested but transport is unavailable")
        if mode == "rst":
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
        else:
            transport.close()
        try:
            await asyncio.wait_for(self.gone.wait(), DROP_FLUSH_TIMEOUT)
        except TimeoutError:
            transport.abort()  # the client never read what was buffered; stop waiting on it
            await self.gone.wait()


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


class Performance:
    """Acts out one behaviour for one accepted chat request."""

    def __init__(self, exchange: Exchange, body: dict[str, Any], behaviour: dict[str, Any]):
        self.exchange = exchange
        self.record = exchange.record
        self.body = body
        self.behaviour = behaviour
        self.stream = body.get("stream") is True
        self.model = body.get("model") if isinstance(body.get("model"), str) else DEFAULT_MODELS[0]
        self.id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        self.created = int(time.time())
        options = body.get("stream_options")
        self.include_usage = isinstance(options, dict) and options.get("include_usage") is True
        tps = behaviour.get("tokens_per_second", DEFAULT_TOKENS_PER_SECOND)
        self.interval = 1.0 / tps if tps else 0.0
        self.tokens = reply_tokens(behaviour, body)
        self.trigger = next((k for k in TRIGGERS if behaviour.get(k) is not None), None)
        self.extra_headers: Headers = [
            (k.lower().encode("latin-1"), v.encode("latin-1"))
            for k, v in behaviour.get("headers", {}).items()
        ]

    async def run(self) -> None:
        await sleep_ms(self.behaviour.get("delay_headers_ms"))
        if "status" in self.behaviour:
            await self.canned()
        elif self.stream:
            await self.streamed()
        else:
            await self.whole()

    async def canned(self) -> None:
        """A response given as is: by default an OpenAI error body for the status."""
        status: int = self.behaviour["status"]
        body = self.behaviour.get("body")
        if body is None:
            body = error_body(status, self.behaviour.get("error_message")) if status >= 400 else {}
        data = body.encode() if isinstance(body, str) else dumps(body)
        headers = list(self.extra_headers)
        if self.behaviour.get("retry_after") is not None:
            headers.append((b"retry-after", str(self.behaviour["retry_after"]).encode("ascii")))
        content_type = self.behaviour.get("content_type", "application/json")
        await self.exchange.respond(status, data, content_type, headers)

    def cut(self) -> int:
        """How many deltas are produced before the trigger fires (it always fires)."""
        if self.trigger is None:
            return len(self.tokens)
        return min(int(self.behaviour[self.trigger]), len(self.tokens))

    def usage(self, completion_tokens: int) -> dict[str, Any] | None:
        if "usage" in self.behaviour and self.behaviour["usage"] is None:
            return None
        prompt = prompt_token_count(self.body)
        usage: dict[str, Any] = {
            "prompt_tokens": prompt,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt + completion_tokens,
        }
        usage.update(self.behaviour.get("usage") or {})
        return usage

    def chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        chunk: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [
                {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
            ],
        }
        if self.include_usage and self.usage(0) is not None:
            chunk["usage"] = None  # OpenAI marks every chunk but the last this way
        return chunk

    async def event(self, payload: dict[str, Any]) -> None:
        await self.exchange.body(b"data: " + dumps(payload) + b"\n\n")

    async def delta(self, token: str) -> None:
        if self.record["tokens_sent"] == 0:
            await self.event(self.chunk({"role": "assistant", "content": ""}))
        elif self.interval:
            await asyncio.sleep(self.interval)
        await self.event(self.chunk({"content": token}))
        self.record["tokens_sent"] += 1
        if self.record["first_token_sent"] is None:
            self.record["first_token_sent"] = time.time()

    async def streamed(self) -> None:
        content_type = self.behaviour.get("content_type", "text/event-stream; charset=utf-8")
        headers = [
            (b"content-type", content_type.encode("latin-1")),
            (b"cache-control", b"no-cache"),
            (b"x-request-id", self.id.encode("ascii")),
            *self.extra_headers,
        ]
        await self.exchange.start(200, headers)
        await sleep_ms(self.behaviour.get("delay_first_token_ms"))
        cut = self.cut()
        for token in self.tokens[:cut]:
            await self.delta(token)
        rest = self.tokens[cut:]
        if self.trigger == "drop_after_tokens":
            await self.exchange.drop(self.behaviour.get("drop_mode", "fin"))
            return
        if self.trigger == "stall_after_tokens":
            await asyncio.Future()  # until the client goes away and the watcher cancels us
        if self.trigger == "error_after_tokens":
            message = self.behaviour.get("error_message", "The upstream failed mid-stream.")
            await self.event(error_body(500, message))
            await self.exchange.finish(
                b"data: [DONE]\n\n" if self.behaviour.get("error_done") else b""
            )
            return
        if self.trigger == "malformed_after_tokens":
            await self.exchange.body(MALFORMED_EVENT)  # then the stream goes on as if not
        for token in rest:
            await self.delta(token)
        finish_reason = self.behaviour.get("finish_reason", "stop")
        await self.event(self.chunk({}, finish_reason))
        usage = self.usage(self.record["tokens_sent"])
        if self.include_usage and usage is not None:
            await self.event(
                {
                    "id": self.id,
                    "object": "chat.completion.chunk",
                    "created": self.created,
                    "model": self.model,
                    "choices": [],
                    "usage": usage,
                }
            )
        await self.exchange.finish(b"data: [DONE]\n\n")

    async def whole(self) -> None:
        """Non-streaming: the answer arrives when generation would have ended."""
        await sleep_ms(self.behaviour.get("delay_first_token_ms"))
        cut = self.cut()
        await asyncio.sleep(self.interval * cut)
        if self.trigger == "drop_after_tokens":
            await self.exchange.drop(self.behaviour.get("drop_mode", "fin"))
            return
        if self.trigger == "stall_after_tokens":
            await asyncio.Future()
        if self.trigger == "error_after_tokens":
            message = self.behaviour.get("error_message", "The upstream failed mid-generation.")
            await self.exchange.respond(
                500, dumps(error_body(500, message)), "application/json", self.extra_headers
            )
            return
        if self.trigger == "malformed_after_tokens":
            await self.exchange.respond(
                200, MALFORMED_EVENT[len(b"data: ") :].strip(), "application/json",
                self.extra_headers,
            )  # fmt: skip
            return
        content = "".join(self.tokens)
        await asyncio.sleep(self.interval * (len(self.tokens) - cut))
        self.record["tokens_sent"] = len(self.tokens)
        self.record["first_token_sent"] = time.time()
        payload: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": self.behaviour.get("finish_reason", "stop"),
                    "logprobs": None,
                }
            ],
        }
        usage = self.usage(len(self.tokens))
        if usage is not None:
            payload["usage"] = usage
        content_type = self.behaviour.get("content_type", "application/json")
        await self.exchange.respond(200, dumps(payload), content_type, self.extra_headers)


# --- ASGI plumbing ---------------------------------------------------------------------------


def dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


async def sleep_ms(ms: float | None) -> None:
    if ms:
        await asyncio.sleep(ms / 1000.0)


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


def main(argv: list[str] | None = None) -> None:
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
        App(),
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
