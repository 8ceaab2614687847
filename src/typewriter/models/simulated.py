"""The built-in simulated model: offline answers with an exact oracle for tests.

``default`` types a canned answer at a human pace; ``echo`` answers with the
user's last message verbatim, cut into pieces of a few characters, so a test
knows exactly what every listener must end up with. ``echo_history`` answers
with the messages the model received, as JSON, so a test can see the context.
Faults are injected per request through :class:`~typewriter.models.base.Simulation`.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
from collections.abc import AsyncIterator

from typewriter.errors import ModelError
from typewriter.events import Usage
from typewriter.messages import wire_content
from typewriter.models.base import Chunk, ModelBackend, ModelRequest, Simulation

__all__ = ["CANNED_ANSWER", "SimulatedModel", "echo_pieces"]

CANNED_ANSWER = """\
Server-Sent Events (SSE) let a server push a stream of text events to a \
browser over one long-lived HTTP response.

- Each event is a few `field: value` lines followed by a blank line.
- The browser's `EventSource` reconnects by itself and sends `Last-Event-ID`, \
so a stream can resume exactly where it stopped.
- Unlike WebSockets, SSE is one-way and plain HTTP, which proxies understand.

This answer comes from typewriter's simulated model, typed one word at a time.
"""

ECHO_PIECE = 4
DEFAULT_RATES = {"default": 25.0, "echo": 50.0}
_WORDS = re.compile(r"\s*\S+\s*|\s+")


def echo_pieces(text: str, size: int = ECHO_PIECE) -> list[str]:
    """The pieces ``echo`` sends; they concatenate to ``text`` exactly."""
    return [text[i : i + size] for i in range(0, len(text), size)]


def _word_pieces(text: str) -> list[str]:
    return _WORDS.findall(text)


def _estimate_tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / 4))


class SimulatedModel(ModelBackend):
    """Models ``default`` and ``echo``; anything else is refused at validation time."""

    models = ("default", "echo")

    @property
    def name(self) -> str:
        return "simulated"

    async def stream(self, request: ModelRequest) -> AsyncIterator[Chunk]:
        sim = request.options.simulate or Simulation()
        question = request.messages[-1].content if request.messages else ""
        if sim.echo_history:
            received = [{"role": m.role, "content": wire_content(m)} for m in request.messages]
            pieces = echo_pieces(json.dumps(received, ensure_ascii=False))
        elif request.model == "echo":
            pieces = echo_pieces(question)
        else:
            pieces = _word_pieces(CANNED_ANSWER)
        rate = sim.tokens_per_second or DEFAULT_RATES.get(request.model, 25.0)
        limit = request.options.max_tokens
        prompt_tokens = sum(_estimate_tokens(m.content) for m in request.messages)
        loop = asyncio.get_running_loop()
        start = loop.time() + sim.first_token_delay_ms / 1000.0
        sent = 0
        for index, piece in enumerate(pieces):
            if sim.stall_after_tokens is not None and index >= sim.stall_after_tokens:
                await asyncio.Event().wait()  # stalls until the consumer gives up and closes us
            if sim.fail_after_tokens is not None and index >= sim.fail_after_tokens:
                raise ModelError(f"simulated model failure after {index} tokens")
            if limit is not None and sent >= limit:
                yield Chunk(finish_reason="length", usage=Usage(prompt_tokens, sent))
                return
            delay = start + index / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            elif index % 32 == 0:
                await asyncio.sleep(0)  # stay fair to other streams when running behind
            sent += 1
            yield Chunk(text=f"{time.time():.6f} " if sim.timestamps else piece)
        if sim.stall_after_tokens is not None and sim.stall_after_tokens >= len(pieces):
            await asyncio.Event().wait()
        yield Chunk(finish_reason="stop", usage=Usage(prompt_tokens, sent))
