"""A minimal OpenAI-compatible model server on raw asyncio: the upstream of the relay benchmark.

The relay benchmark measures what a gateway costs between a client and a model server, so the
model server must cost next to nothing itself: no framework, no JSON encoding per chunk (each
chunk's bytes are made once at start), one timer per stream. It speaks just enough of the
protocol for typewriter and LiteLLM to relay it: ``POST /v1/chat/completions`` with
``"stream": true`` answers ``CHUNKS`` content chunks, ``RATE`` per second, as SSE in HTTP/1.1
chunked encoding, the first one at once (the time to first token is the gateway's alone), the
last with ``finish_reason: "stop"`` and usage, then ``data: [DONE]``; without ``stream`` the
same text as one completion. ``GET /v1/models`` and ``GET /healthz`` answer for health checks.
Connections are kept alive, as gateways pool them.

The text of every answer is the same (``answer_text``): the load checks each relayed answer
against it.

    python benchmarks/relay_upstream.py --port 8123 [--chunks 40] [--rate 40]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from typing import cast

__all__ = ["answer_text", "pieces"]

_HEAD_LIMIT = 64 * 1024


def pieces(chunks: int) -> list[str]:
    """The content of each chunk: ``w0001 ``, ``w0002 ``… (easy to check, the same each time)."""
    return [f"w{n:04d} " for n in range(1, chunks + 1)]


def answer_text(chunks: int) -> str:
    """The whole answer: every chunk's content, in order."""
    return "".join(pieces(chunks))


def _chunked(payload: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(payload), payload)


def _event(data: dict[str, object]) -> bytes:
    return _chunked(b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n")


def _stream_chunks(chunks: int) -> list[bytes]:
    """Every write of a streamed answer, encoded once: the content chunks, then the end."""
    base = {"id": "chatcmpl-relay", "object": "chat.completion.chunk", "created": 0}
    out = []
    for index, text in enumerate(pieces(chunks)):
        delta: dict[str, object] = {"content": text}
        if index == 0:
            delta["role"] = "assistant"
        choice = {"index": 0, "delta": delta, "finish_reason": None}
        out.append(_event({**base, "model": "relay", "choices": [choice]}))
    usage = {"prompt_tokens": 5, "completion_tokens": chunks, "total_tokens": chunks + 5}
    end = {"index": 0, "delta": {}, "finish_reason": "stop"}
    out[-1] += _event({**base, "model": "relay", "choices": [end], "usage": usage})
    out[-1] += _chunked(b"data: [DONE]\n\n") + b"0\r\n\r\n"
    return out


_STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\n\r\n"
)


def _json_response(body: bytes, status: bytes = b"200 OK") -> bytes:
    return (
        b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n\r\n" % len(body)
    ) + body


class Upstream(asyncio.Protocol):
    """One client connection: requests in turn (keep-alive), a streamed answer at a time."""

    def __init__(self, chunks: list[bytes], completion: bytes, interval: float) -> None:
        self.chunks = chunks
        self.completion = completion
        self.interval = interval
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.timer: asyncio.TimerHandle | None = None
        self.sent = 0
        self.loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()  # the client went away: the "model" stops generating
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self.transport is not None and self.timer is None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > _HEAD_LIMIT:
                    self.transport.close()
                return
            head = self.buffer[:end].decode("latin-1")
            length = 0
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            self.answer(head.split(" ", 2), body)

    def answer(self, request_line: list[str], body: bytes) -> None:
        assert self.transport is not None
        method, path = request_line[0], request_line[1] if len(request_line) > 1 else ""
        if method == "GET" and path.startswith(("/v1/models", "/healthz")):
            self.transport.write(_json_response(b'{"object":"list","data":[{"id":"relay"}]}'))
        elif method == "POST" and path.startswith("/v1/chat/completions"):
            if b'"stream":true' in body.replace(b" ", b""):
                self.transport.write(_STREAM_HEAD)
                self.sent = 0
                self.tick()
            else:
                self.transport.write(_json_response(self.completion))
        else:
            self.transport.write(_json_response(b'{"error":"not found"}', b"404 Not Found"))

    def tick(self) -> None:
        """Write the next chunk; the next one in ``interval`` (one timer per stream)."""
        self.timer = None
        if self.transport is None:
            return
        self.transport.write(self.chunks[self.sent])
        self.sent += 1
        if self.sent < len(self.chunks):
            self.timer = self.loop.call_later(self.interval, self.tick)
        elif self.buffer:
            self.data_received(b"")  # a request that came while this one streamed


async def serve(port: int, chunks: int, rate: float) -> None:
    encoded = _stream_chunks(chunks)
    text = answer_text(chunks)
    completion = json.dumps(
        {
            "id": "chatcmpl-relay",
            "object": "chat.completion",
            "created": 0,
            "model": "relay",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 5, "completion_tokens": chunks, "total_tokens": chunks + 5},
        }
    ).encode()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: Upstream(encoded, completion, 1 / rate), "127.0.0.1", port, backlog=4096
    )
    stop = loop.create_future()
    loop.add_signal_handler(signal.SIGTERM, stop.set_result, None)
    async with server:
        await stop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--chunks", type=int, default=40)
    parser.add_argument("--rate", type=float, default=40.0, help="chunks per second")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(serve(args.port, args.chunks, args.rate))


if __name__ == "__main__":
    main()
