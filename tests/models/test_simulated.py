"""The simulated model is the tests' oracle, so its own behaviour is pinned down here."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from typewriter.errors import ModelError
from typewriter.messages import ChatMessage
from typewriter.models.base import Chunk, GenerationOptions, ModelRequest, Simulation
from typewriter.models.simulated import CANNED_ANSWER, SimulatedModel, echo_pieces

pytestmark = pytest.mark.anyio
FAST = Simulation(tokens_per_second=100_000)


def request(model: str, text: str, **options: object) -> ModelRequest:
    sim = options.pop("simulate", FAST)
    return ModelRequest(
        model=model,
        messages=(ChatMessage("user", text),),
        options=GenerationOptions(simulate=sim, **options),  # type: ignore[arg-type]
    )


async def collect(model: str, text: str, **options: object) -> list[Chunk]:
    return [chunk async for chunk in SimulatedModel().stream(request(model, text, **options))]


@pytest.mark.parametrize(
    "text",
    ["a", "   ", "\n\n", "line\r\nnext\rlast\n", "emoji 🎉👩‍👩‍👧 and 什么是SSE?", "x" * 1001],
)
async def test_echo_returns_the_message_exactly_in_small_pieces(text: str) -> None:
    chunks = await collect("echo", text)
    pieces = [c.text for c in chunks if c.text]
    assert "".join(pieces) == text
    assert pieces == echo_pieces(text)
    assert all(1 <= len(p) <= 4 for p in pieces)
    assert chunks[-1].finish_reason == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == len(pieces)


async def test_default_types_the_canned_answer_word_by_word() -> None:
    chunks = await collect("default", "anything")
    pieces = [c.text for c in chunks if c.text]
    assert "".join(pieces) == CANNED_ANSWER
    assert len(pieces) > 30


async def test_max_tokens_ends_with_length() -> None:
    chunks = await collect("echo", "abcdefghijkl", max_tokens=2)
    assert [c.text for c in chunks if c.text] == ["abcd", "efgh"]
    assert chunks[-1].finish_reason == "length"


async def test_fail_after_tokens_raises_after_that_many() -> None:
    pieces: list[str] = []
    with pytest.raises(ModelError):
        async for chunk in SimulatedModel().stream(
            request("echo", "abcdefghijkl", simulate=Simulation(100_000, fail_after_tokens=2))
        ):
            pieces.append(chunk.text)
    assert pieces == ["abcd", "efgh"]


async def test_stall_stops_producing_without_ending_until_closed() -> None:
    stream = SimulatedModel().stream(
        request("echo", "abcdefghijkl", simulate=Simulation(100_000, stall_after_tokens=1))
    )
    assert (await anext(stream)).text == "abcd"
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):
            await anext(stream)
    with contextlib.suppress(StopAsyncIteration):
        await stream.aclose()  # type: ignore[attr-defined]


async def test_rate_and_first_token_delay_are_honoured() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    sim = Simulation(tokens_per_second=100, first_token_delay_ms=200)
    chunks = await collect("echo", "x" * 40, simulate=sim)  # 10 pieces at 100/s
    elapsed = loop.time() - started
    assert len([c for c in chunks if c.text]) == 10
    assert elapsed >= 0.2 + 9 / 100 - 0.01


async def test_timestamps_replace_each_piece_with_its_production_time() -> None:
    import time

    before = time.time()
    chunks = await collect("echo", "x" * 16, simulate=Simulation(100_000, timestamps=True))
    stamps = [float(c.text) for c in chunks if c.text]
    assert len(stamps) == 4
    assert all(before <= s <= time.time() for s in stamps)
