"""Chat's own limits, without HTTP: answers at once per user, message and answer length.

- answers generating at once per user: ``TooManyRequests`` (``too_many_streams``,
  with ``retry_after``) before anything is recorded; a slot frees however an
  answer ends, and before its ``end`` is appended;
- message length: ``MessageTooLong`` with each message's position and length,
  before anything starts (the API names the request field; see tests/api);
- answer length: cut exactly at ``max_answer_chars``, ending ``length``.

What the API makes of them (statuses, shapes, ``Retry-After``) is in
``tests/api/test_limits.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from helpers import logged_events
from typewriter.assistants import Assistant, Timeouts
from typewriter.chat import Chat, Question
from typewriter.config import load_settings
from typewriter.errors import BrokerUnavailable, MessageTooLong, ModelError, TooManyRequests
from typewriter.messages import ChatMessage
from typewriter.models.base import Chunk, ModelBackend, ModelRequest
from typewriter.streams.memory import MemoryBroker

pytestmark = pytest.mark.anyio


class Pieces(ModelBackend):
    """Yields ``pieces``, then ends ``stop``, fails, or stalls until closed."""

    def __init__(self, *pieces: str, then: str = "stop") -> None:
        self.pieces = pieces
        self.then = then
        self.closed = asyncio.Event()

    async def stream(self, request: ModelRequest) -> AsyncIterator[Chunk]:
        try:
            for piece in self.pieces:
                yield Chunk(text=piece)
                await asyncio.sleep(0)
            if self.then == "stall":
                await asyncio.Event().wait()
            if self.then == "fail":
                raise ModelError("the model broke")
            yield Chunk(finish_reason="stop")
        finally:
            self.closed.set()


class SpyBroker(MemoryBroker):
    """Remembers the streams created; ``down`` makes ``create`` fail like Redis away."""

    def __init__(self) -> None:
        super().__init__()
        self.created: list[str] = []
        self.down = False

    async def create(self, owner: str, stream_id: str | None = None) -> str:
        if self.down:
            raise BrokerUnavailable("the broker is away")
        created = await super().create(owner, stream_id)
        self.created.append(created)
        return created


def make_chat(models: dict[str, ModelBackend], **settings: Any) -> tuple[Chat, SpyBroker]:
    config = load_settings(**settings)
    timeouts = Timeouts(config.first_token_timeout, config.idle_timeout, config.total_timeout)
    assistants = {name: Assistant(name, name, model, timeouts) for name, model in models.items()}
    broker = SpyBroker()
    return Chat(config, broker, assistants), broker


def question(owner: str, assistant: str, *contents: str, persist: bool = False) -> Question:
    messages = tuple(ChatMessage("user", c) for c in contents or ("go",))
    return Question(
        owner=owner, messages=messages, assistant=assistant, persist=persist, limit_key=owner
    )


async def events(broker: MemoryBroker, stream_id: str, owner: str) -> list[tuple[str, Any]]:
    return await logged_events(broker, stream_id, owner)


async def test_answers_at_once_are_limited_per_user_before_anything_starts() -> None:
    chat, broker = make_chat({"stall": Pieces("a", then="stall")}, max_streams_per_user=2)
    first = await chat.ask(question("ann", "stall"))
    await chat.ask(question("ann", "stall"))
    with pytest.raises(TooManyRequests) as refused:
        await chat.ask(question("ann", "stall"))
    assert refused.value.code == "too_many_streams"
    assert "max_streams_per_user = 2" in refused.value.message
    assert 1 <= refused.value.retry_after <= 5
    assert len(broker.created) == 2, "the refused answer opened a stream"
    assert chat.running == 2 and chat.generating("ann") == 2

    await chat.ask(question("bob", "stall"))  # one user's answers do not count for another
    await broker.cancel(first.stream_id, "ann")
    got = await events(broker, first.stream_id, "ann")
    assert got[-1][1]["finish_reason"] == "cancelled"
    # Freed before ``end`` was appended: whoever saw ``end`` may ask at once.
    assert chat.generating("ann") == 1
    await chat.ask(question("ann", "stall"))
    await chat.shutdown()
    assert chat.generating("ann") == chat.generating("bob") == 0


@pytest.mark.parametrize(
    ("then", "settings", "finish_reason"),
    [
        ("stop", {}, "stop"),
        ("fail", {}, "error"),
        ("stall", {"idle_timeout": 0.1}, "timeout"),
        ("stall", {"grace": 0.1}, "cancelled"),  # nobody listened: abandoned
    ],
)
async def test_every_ending_gives_the_slot_back(
    then: str, settings: dict[str, float], finish_reason: str
) -> None:
    model = Pieces("a", "b", then=then)
    chat, broker = make_chat({"m": model}, max_streams_per_user=1, **settings)
    answer = await chat.ask(question("ann", "m"))
    async with asyncio.timeout(5):
        await model.closed.wait()  # before listening: a listener would keep it from grace
    got = await events(broker, answer.stream_id, "ann")
    assert got[-1][1]["finish_reason"] == finish_reason
    assert chat.generating("ann") == 0
    await chat.ask(question("ann", "m"))  # accepted: the limit is one
    await chat.shutdown()


async def test_shutdown_before_an_answer_ever_ran_gives_the_slot_back() -> None:
    chat, _ = make_chat({"stall": Pieces(then="stall")}, max_streams_per_user=1)
    await chat.ask(question("ann", "stall"))
    await chat.shutdown()  # cancels the task before its first step: only its callback runs
    assert chat.generating("ann") == 0 and chat.running == 0


async def test_a_start_that_fails_gives_the_slot_back() -> None:
    chat, broker = make_chat({"m": Pieces("a")}, max_streams_per_user=1)
    broker.down = True
    for _ in range(3):  # not TooManyRequests on the second try: no slot was kept
        with pytest.raises(BrokerUnavailable):
            await chat.ask(question("ann", "m"))
    assert chat.generating("ann") == 0
    broker.down = False
    answer = await chat.ask(question("ann", "m"))
    assert (await events(broker, answer.stream_id, "ann"))[-1][1]["finish_reason"] == "stop"


async def test_long_messages_are_refused_before_anything_starts() -> None:
    chat, broker = make_chat({"m": Pieces("a")}, max_message_chars=5, max_streams_per_user=1)
    with pytest.raises(MessageTooLong) as refused:
        await chat.ask(question("ann", "m", "12345", "123456", "1234567"))
    assert refused.value.lengths == {1: 6, 2: 7} and refused.value.limit == 5
    with pytest.raises(MessageTooLong) as persisted:
        await chat.ask(question("ann", "m", "123456", persist=True))
    assert persisted.value.lengths == {0: 6}
    assert broker.created == [] and chat.generating("ann") == 0
    # Characters, not bytes: five emoji are five characters.
    answer = await chat.ask(question("ann", "m", "🎉🎉🎉🎉🎉"))
    await events(broker, answer.stream_id, "ann")


@pytest.mark.parametrize(
    ("limit", "text", "finish_reason"),
    [
        (1, "a", "length"),
        (5, "abcde", "length"),  # the piece crossing the limit is shortened
        (6, "abcdef", "length"),  # filled exactly, and the model had more
        (9, "abcdefghi", "stop"),  # filled exactly, and the model was done
        (100, "abcdefghi", "stop"),
    ],
)
async def test_answers_are_cut_at_max_answer_chars(
    limit: int, text: str, finish_reason: str
) -> None:
    model = Pieces("abc", "def", "ghi")
    chat, broker = make_chat({"m": model}, max_answer_chars=limit)
    answer = await chat.ask(question("ann", "m"))
    got = await events(broker, answer.stream_id, "ann")
    assert "".join(data["text"] for name, data in got if name == "delta") == text
    assert [name for name, _ in got if name not in ("start", "delta")] == ["end"]
    assert got[-1][1]["finish_reason"] == finish_reason
    assert model.closed.is_set()
