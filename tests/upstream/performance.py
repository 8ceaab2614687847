"""Acting out one scripted behaviour on one accepted chat request (see ``control.py``)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

from behaviours import (
    DEFAULT_MODELS,
    DEFAULT_TOKENS_PER_SECOND,
    KEEPALIVE,
    MALFORMED_EVENT,
    OVERSIZE_BYTES,
    TRIGGERS,
    dumps,
    encode_chunk,
    error_body,
    prompt_token_count,
    reply_tokens,
)
from exchange import Exchange, Headers

FILLER = b"x" * 65536  # an oversized content is written in pieces of this, never held whole


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
        # vLLM's running count: usage on every chunk, so far (the chunk's own token counted).
        self.continuous = (
            isinstance(options, dict) and options.get("continuous_usage_stats") is True
        )
        tps = behaviour.get("tokens_per_second", DEFAULT_TOKENS_PER_SECOND)
        self.interval = 1.0 / tps if tps else 0.0
        self.tokens = reply_tokens(behaviour, body)
        self.trigger = next((k for k in TRIGGERS if behaviour.get(k) is not None), None)
        self.extra_headers: Headers = [
            (k.lower().encode("latin-1"), v.encode("latin-1"))
            for k, v in behaviour.get("headers", {}).items()
        ]
        self.ascii_only = not behaviour.get("raw_utf8", False)
        self.oversize: int = behaviour.get("oversize_bytes", OVERSIZE_BYTES)
        exchange.write_bytes = behaviour.get("write_bytes")

    async def run(self) -> None:
        await sleep_ms(self.behaviour.get("delay_headers_ms"))
        if "status" in self.behaviour:
            await self.canned()
        elif "chunks" in self.behaviour:
            await self.replayed()
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
        if self.continuous and self.usage(0) is not None:
            sent = self.record["tokens_sent"] + (1 if delta.get("content") else 0)
            chunk["usage"] = self.usage(sent)
        elif self.include_usage and self.usage(0) is not None:
            chunk["usage"] = None  # OpenAI marks every chunk but the last this way
        return chunk

    def dumps(self, payload: dict[str, Any]) -> bytes:
        return dumps(payload, ascii_only=self.ascii_only)

    async def event(self, payload: dict[str, Any]) -> None:
        await self.exchange.body(b"data: " + self.dumps(payload) + b"\n\n")

    async def delta(self, token: str | None) -> None:
        """One content delta; ``None``: one whose content is ``oversize_bytes`` of filler."""
        if self.record["tokens_sent"] == 0:
            await self.event(self.chunk({"role": "assistant", "content": ""}))
        elif self.interval:
            await asyncio.sleep(self.interval)
        if self.behaviour.get("keepalive"):
            await self.exchange.body(KEEPALIVE)
        if token is None:
            event = b"data: " + self.dumps(self.chunk({"content": ""})) + b"\n\n"
            for piece in filled(event, self.oversize):
                await self.exchange.body(piece)
                # uvicorn's send returns at once when the client has gone: yield, so that
                # the disconnect watcher can stop us.
                await asyncio.sleep(0)
        else:
            await self.event(self.chunk({"content": token}))
        self.record["tokens_sent"] += 1
        if self.record["first_token_sent"] is None:
            self.record["first_token_sent"] = time.time()

    async def start_stream(self) -> None:
        content_type = self.behaviour.get("content_type", "text/event-stream; charset=utf-8")
        headers = [
            (b"content-type", content_type.encode("latin-1")),
            (b"cache-control", b"no-cache"),
            (b"x-request-id", self.id.encode("ascii")),
            *self.extra_headers,
        ]
        await self.exchange.start(200, headers)

    async def replayed(self) -> None:
        """``chunks``: the scripted items as the body, verbatim, whatever ``stream`` asked.

        Each item counts as one token: ``tokens_per_second`` paces the items,
        ``tokens_sent`` counts them, and the stall and drop triggers fire after that many.
        """
        items: list[dict[str, Any] | str] = self.behaviour["chunks"]
        await self.start_stream()
        await sleep_ms(self.behaviour.get("delay_first_token_ms"))
        cut = len(items)
        if self.trigger is not None:
            cut = min(int(self.behaviour[self.trigger]), len(items))
        for position, item in enumerate(items[:cut]):
            await self.item(position, item)
        if self.trigger == "drop_after_tokens":
            await self.exchange.drop(self.behaviour.get("drop_mode", "fin"))
            return
        if self.trigger == "stall_after_tokens":
            await asyncio.Future()  # until the client goes away and the watcher cancels us
        for position, item in enumerate(items[cut:], start=cut):
            await self.item(position, item)
        await self.exchange.finish()

    async def item(self, position: int, item: dict[str, Any] | str) -> None:
        if position and self.interval:
            await asyncio.sleep(self.interval)
        await self.exchange.body(encode_chunk(item, ascii_only=self.ascii_only))
        self.record["tokens_sent"] += 1
        if self.record["first_token_sent"] is None:
            self.record["first_token_sent"] = time.time()

    async def streamed(self) -> None:
        await self.start_stream()
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
        if self.trigger == "oversize_after_tokens":
            await self.delta(None)  # then the stream goes on, for a reader that took it in
        for token in rest:
            await self.delta(token)
        finish_reason = self.behaviour.get("finish_reason", "stop")
        if finish_reason is not None:
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
        done = self.behaviour.get("done", True)
        if done == "drop":  # the connection breaks where [DONE] would come
            await self.exchange.drop(self.behaviour.get("drop_mode", "fin"))
            return
        await self.exchange.finish(b"data: [DONE]\n\n" if done else b"")

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
        oversize = self.trigger == "oversize_after_tokens"
        content = "" if oversize else "".join(self.tokens)
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
        if not oversize:
            await self.exchange.respond(200, self.dumps(payload), content_type, self.extra_headers)
            return
        encoded = self.dumps(payload)
        headers = [
            (b"content-type", content_type.encode("latin-1")),
            (b"content-length", str(len(encoded) + self.oversize).encode("ascii")),
            *self.extra_headers,
        ]
        await self.exchange.start(200, headers)
        for piece in filled(encoded, self.oversize):
            await self.exchange.body(piece)
        await self.exchange.finish()


def filled(encoded: bytes, size: int) -> Iterator[bytes]:
    """``encoded`` in pieces, with ``size`` bytes of filler in its (first) empty content."""
    head, slot, tail = encoded.partition(b'"content":""')
    assert slot, "no empty content to fill"
    yield head + b'"content":"'
    for start in range(0, size, len(FILLER)):
        yield FILLER[: size - start]
    yield b'"' + tail


async def sleep_ms(ms: float | None) -> None:
    if ms:
        await asyncio.sleep(ms / 1000.0)
