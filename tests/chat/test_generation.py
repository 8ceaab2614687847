"""A generation on its own: every way an answer ends closes the model's iterator."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from helpers import logged_events
from typewriter.assistants import Assistant, Timeouts
from typewriter.chat import Chat, Question
from typewriter.chat.generation import _Progress
from typewriter.config import load_settings
from typewriter.events import ToolCall
from typewriter.messages import ChatMessage
from typewriter.models.base import Chunk, ModelBackend, ModelRequest
from typewriter.streams.memory import MemoryBroker
from typewriter.token_estimate import estimate_tokens

pytestmark = pytest.mark.anyio


class RecordingModel(ModelBackend):
    """Yields numbered pieces forever (or stalls) and records when it was closed."""

    def __init__(self, *, stall: bool = False) -> None:
        self.stall = stall
        self.closed = asyncio.Event()
        self.started = asyncio.Event()  # the first piece was handed over
        self.produced = 0

    async def stream(self, request: ModelRequest) -> AsyncIterator[Chunk]:
        try:
            while True:
                if self.stall and self.produced >= 2:
                    await asyncio.Event().wait()
                self.produced += 1
                yield Chunk(text=f"{self.produced} ")
                self.started.set()
                await asyncio.sleep(0.005)
        finally:
            self.closed.set()


async def run(model: RecordingModel, **settings: float) -> tuple[Chat, MemoryBroker, str]:
    broker = MemoryBroker()
    config = load_settings(**settings)
    timeouts = Timeouts(config.first_token_timeout, config.idle_timeout, config.total_timeout)
    chat = Chat(config, broker, {"rec": Assistant("rec", "rec", model, timeouts)})
    question = Question(
        owner="u", messages=(ChatMessage("user", "go"),), assistant="rec", limit_key="u"
    )
    answer = await chat.ask(question)
    return chat, broker, answer.stream_id


async def events(broker: MemoryBroker, stream_id: str) -> list[tuple[str, dict[str, object]]]:
    return await logged_events(broker, stream_id, "u")


async def until_idle(chat: Chat) -> None:
    """The generation's task is gone (its done callback ran): bounded, on this loop."""
    async with asyncio.timeout(5):
        while chat.running:
            await asyncio.sleep(0)


async def test_cancel_closes_the_model_and_ends_cancelled() -> None:
    model = RecordingModel()
    chat, broker, sid = await run(model)
    async with asyncio.timeout(5):
        await model.started.wait()
    await broker.cancel(sid, "u")
    async with asyncio.timeout(5):
        await model.closed.wait()
    got = await events(broker, sid)
    name, end = got[-1]
    assert (name, end["finish_reason"], end["message_id"]) == (
        "end",
        "cancelled",
        got[0][1]["message_id"],
    )
    assert end["usage"]["estimated"] is True  # the model never counted: the gateway did
    deltas = [e for e in got if e[0] == "delta"]
    assert len(deltas) == model.produced, "a piece the model produced was not shown"
    await until_idle(chat)


async def test_abandoned_answer_closes_the_model_after_grace() -> None:
    model = RecordingModel()
    _, broker, sid = await run(model, grace=0.1)
    async with asyncio.timeout(5):
        await model.closed.wait()
    assert (await events(broker, sid))[-1][1]["finish_reason"] == "cancelled"


async def test_idle_timeout_closes_the_model_and_reports_it() -> None:
    model = RecordingModel(stall=True)
    _, broker, sid = await run(model, idle_timeout=0.1)
    async with asyncio.timeout(5):
        await model.closed.wait()
    got = await events(broker, sid)
    assert [name for name, _ in got] == ["start", "delta", "delta", "error", "end"]
    assert got[3][1]["code"] == "upstream_timeout"
    assert got[4][1]["finish_reason"] == "timeout"


async def test_shutdown_interrupts_running_answers() -> None:
    model = RecordingModel()
    chat, broker, sid = await run(model)
    async with asyncio.timeout(5):
        await model.started.wait()
    await chat.shutdown()
    assert model.closed.is_set()
    got = await events(broker, sid)
    assert got[-2] == ("error", {"code": "interrupted", "message": "the server is shutting down"})
    assert got[-1][1]["finish_reason"] == "error"


async def test_total_timeout_ends_a_model_that_never_stops() -> None:
    model = RecordingModel()  # produces forever, never idle
    _, broker, sid = await run(model, total_timeout=0.3)
    async with asyncio.timeout(5):
        await model.closed.wait()
    got = await events(broker, sid)
    assert got[-2][0] == "error" and got[-2][1]["code"] == "upstream_timeout"
    assert got[-1][1]["finish_reason"] == "timeout"
    assert len(got) > 10


class ScriptedModel(ModelBackend):
    """Yields the chunks it was given, then a finish chunk with ``reason``."""

    def __init__(self, chunks: list[Chunk], reason: str = "stop") -> None:
        self.chunks = chunks
        self.reason = reason

    async def stream(self, request: ModelRequest) -> AsyncIterator[Chunk]:
        for chunk in self.chunks:
            yield chunk
        yield Chunk(finish_reason=self.reason)


async def run_scripted(
    model: ScriptedModel, reasoning: str = "show", **settings: float
) -> list[tuple[str, dict[str, object]]]:
    broker = MemoryBroker()
    config = load_settings(**settings)
    timeouts = Timeouts(config.first_token_timeout, config.idle_timeout, config.total_timeout)
    assistant = Assistant("s", "s", model, timeouts, reasoning=reasoning)
    chat = Chat(config, broker, {"s": assistant})
    question = Question(
        owner="u", messages=(ChatMessage("user", "go"),), assistant="s", limit_key="u"
    )
    answer = await chat.ask(question)
    await until_idle(chat)
    return await events(broker, answer.stream_id)


async def test_reasoning_is_its_own_event_bounded_by_its_own_limit() -> None:
    model = ScriptedModel(
        [Chunk(reasoning="abcd"), Chunk(reasoning="efgh"), Chunk(reasoning="ij"), Chunk("ok")]
    )
    got = await run_scripted(model, max_reasoning_chars=6, max_answer_chars=2)
    assert [(n, e.get("text")) for n, e in got[1:-1]] == [
        ("reasoning", "abcd"),
        ("reasoning", "ef"),  # cut at max_reasoning_chars; the rest dropped, the answer goes on
        ("delta", "ok"),
    ]
    assert got[-1][1]["finish_reason"] == "stop"  # max_answer_chars counts the text only


async def test_hidden_reasoning_never_reaches_the_stream() -> None:
    model = ScriptedModel([Chunk(reasoning="secret"), Chunk("answer")])
    got = await run_scripted(model, reasoning="hide")
    assert [n for n, _ in got] == ["start", "delta", "end"]
    usage = got[-1][1]["usage"]
    assert isinstance(usage, dict) and usage["estimated"] is True
    assert usage["completion_tokens"] == estimate_tokens("secretanswer")  # thinking is billed


async def test_tool_call_fragments_are_relayed_one_for_one_and_count_as_the_answer() -> None:
    calls = [
        Chunk(tool_calls=(ToolCall(0, "", "call_a", "f"), ToolCall(1, "", "call_b", "g"))),
        Chunk(tool_calls=(ToolCall(0, '{"x":'),)),
        Chunk(tool_calls=(ToolCall(1, '{"y": 2}'),)),
        Chunk(tool_calls=(ToolCall(0, " 1}"),)),
    ]
    got = await run_scripted(ScriptedModel(calls, "tool_calls"))
    assert [e for n, e in got if n == "tool_call"] == [
        {"index": 0, "id": "call_a", "name": "f", "arguments": ""},
        {"index": 1, "id": "call_b", "name": "g", "arguments": ""},
        {"index": 0, "arguments": '{"x":'},
        {"index": 1, "arguments": '{"y": 2}'},
        {"index": 0, "arguments": " 1}"},
    ]
    assert got[-1][1]["finish_reason"] == "tool_calls"
    # ids and names count too: 7 + 7 of the 20, then 5 of '{"x":' leave 1 for '{"y": 2}'
    cut = await run_scripted(ScriptedModel(calls, "tool_calls"), max_answer_chars=20)
    assert [e["arguments"] for n, e in cut if n == "tool_call"] == ["", "", '{"x":', "{"]
    assert cut[-1][1]["finish_reason"] == "length"


def test_what_redis_refused_is_cut_by_each_pieces_own_number() -> None:
    """Redis holds events up to 5: the pieces numbered after it were never seen, whatever
    their kind, and are not stored; hidden reasoning never was on the stream and stays."""
    progress = _Progress(["a", "b", "c", "d"])
    progress.jumps = [(0, 3), (1, 5), (3, 8)]  # 4, 7 are reasoning (or tool calls) between
    progress.reasoning = ["r1", "r2", "secret", "r3"]
    progress.reasoning_seqs = [2, 4, None, 6]
    progress.shown(9)
    assert progress.parts == ["a", "b", "c", "d"]
    progress.shown(7)
    assert progress.parts == ["a", "b", "c"]  # c is 6
    progress.shown(5)
    assert progress.parts == ["a", "b"]
    assert progress.reasoning == ["r1", "r2", "secret"]
    progress.shown(1)
    assert progress.parts == [] and progress.reasoning == ["secret"]
