"""A model's reasoning, end to end: each upstream shape, the bound, show and hide, history.

A real gateway in front of a real upstream process that replays the exact ``delta`` shapes
reasoning servers send (``tests/replay_upstream.py``): ``reasoning_content`` (DeepSeek,
vLLM), ``reasoning`` (OpenRouter, newer vLLM, Ollama) and ``<think>…</think>`` inside the
content (a model served as plain text, read only for an assistant with ``think_tags``).
What a client sees is the stream's events and the stored conversation; what the model sees
is the request body the upstream recorded.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from conftest import RunningServer, ServerFactory, read_events
from helpers import ask, data_of, follow, text_of
from replay_upstream import replay
from typewriter import sse
from upstream.control import Upstream

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

__all__ = ["replay"]  # the fixture

THOUGHT = ["The user ", "asks for ", "a greeting."]
ANSWER = ["Hello", ", there", "!"]


def reasoning_of(events: list[sse.Event]) -> str:
    return "".join(data_of(e)["text"] for e in events if e.event == "reasoning")


def number(event: sse.Event) -> int:
    assert event.id is not None
    return int(event.id)


def shaped(field: str) -> dict[str, Any]:
    """A behaviour: the thought in ``field`` deltas, then the answer as ``content``."""
    return {"deltas": [{field: t} for t in THOUGHT] + [{"content": t} for t in ANSWER]}


@pytest.fixture
def upstream(replay: Upstream) -> Upstream:
    replay.reset()
    return replay


def gateway_for(make_server: ServerFactory, upstream: Upstream, **assistant: Any) -> RunningServer:
    settings = assistant.pop("settings", {})
    return make_server(
        upstreams=[{"name": "r", "base_url": upstream.base_url, "headers_timeout": 5}],
        assistants=[{"name": "up", "model": "reasoner", **assistant}],
        **settings,
    )


async def answer(server: RunningServer, message: str = "hi", **fields: Any) -> list[sse.Event]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        started = await ask(client, message, assistant="up", **fields)
        return await follow(client, started["events_url"])


async def stored_answer(server: RunningServer, conversation_id: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        body = (await client.get(f"/v1/conversations/{conversation_id}")).json()
    message: dict[str, Any] = body["messages"][-1]
    return message


def conversation_of(events: list[sse.Event]) -> str:
    return str(data_of(events[0])["conversation_id"])


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
async def test_each_reasoning_field_is_its_own_event_kind_before_the_answer(
    make_server: ServerFactory, upstream: Upstream, field: str
) -> None:
    server = gateway_for(make_server, upstream)
    upstream.script(shaped(field))
    events = await answer(server)
    kinds = [e.event for e in events]
    assert kinds == ["start"] + ["reasoning"] * 3 + ["delta"] * 3 + ["end"]
    assert [number(e) for e in events] == list(range(1, len(events) + 1))  # numbered as all
    assert reasoning_of(events) == "".join(THOUGHT)
    assert text_of(events) == "".join(ANSWER)
    stored = await stored_answer(server, conversation_of(events))
    assert (stored["text"], stored["reasoning"]) == ("".join(ANSWER), "".join(THOUGHT))


async def test_think_tags_split_anywhere_are_reasoning_for_an_assistant_that_says_so(
    make_server: ServerFactory, upstream: Upstream
) -> None:
    pieces = ["\n<th", "ink", ">\nLet me ", "see.\n</", "think", ">\n\n", "Four", "."]
    behaviour = {"deltas": [{"content": p} for p in pieces]}
    server = gateway_for(make_server, upstream, think_tags=True)
    upstream.script(behaviour)
    events = await answer(server)
    assert reasoning_of(events) == "Let me see.\n"
    assert text_of(events) == "Four."
    assert "<" not in text_of(events)
    stored = await stored_answer(server, conversation_of(events))
    assert (stored["text"], stored["reasoning"]) == ("Four.", "Let me see.\n")

    plain = gateway_for(make_server, upstream)  # think_tags off: the tags are the answer's
    upstream.script(behaviour)
    events = await answer(plain)
    assert reasoning_of(events) == "" and text_of(events) == "".join(pieces)


async def test_reasoning_is_bounded_by_max_reasoning_chars_and_the_answer_goes_on(
    make_server: ServerFactory, upstream: Upstream
) -> None:
    server = gateway_for(
        make_server, upstream, settings={"max_reasoning_chars": 12, "max_answer_chars": 1000}
    )
    upstream.script(shaped("reasoning_content"))
    events = await answer(server)
    assert reasoning_of(events) == "".join(THOUGHT)[:12]
    assert text_of(events) == "".join(ANSWER)
    end = data_of(events[-1])
    assert end["finish_reason"] == "stop"
    stored = await stored_answer(server, conversation_of(events))
    assert stored["reasoning"] == "".join(THOUGHT)[:12] and stored["text"] == "".join(ANSWER)


async def test_a_hidden_reasoning_is_stored_but_never_shown(
    make_server: ServerFactory, upstream: Upstream, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from typewriter.store.sql import SqlStore

    data_dir = tmp_path_factory.mktemp("hidden")
    server = gateway_for(make_server, upstream, reasoning="hide", settings={"data_dir": data_dir})
    upstream.script(shaped("reasoning_content"))
    events = await answer(server)
    assert [e.event for e in events] == ["start"] + ["delta"] * 3 + ["end"]
    assert text_of(events) == "".join(ANSWER)
    shown = await stored_answer(server, conversation_of(events))
    assert shown["text"] == "".join(ANSWER) and shown["reasoning"] is None
    store = SqlStore(f"sqlite+aiosqlite:///{data_dir / 'typewriter.db'}")
    try:
        kept = await store.get_message("local", shown["id"])
    finally:
        await store.close()
    assert kept.reasoning == "".join(THOUGHT)


async def test_reasoning_is_never_sent_back_to_the_model(
    make_server: ServerFactory, upstream: Upstream
) -> None:
    server = gateway_for(make_server, upstream, think_tags=True)
    upstream.script(
        shaped("reasoning_content"),
        {"deltas": [{"content": "<think>secret plan</think>Done."}]},
        {"deltas": [{"content": "ok"}]},
    )
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        first = await ask(client, "one", assistant="up")
        await follow(client, first["events_url"])
        conversation = first["conversation_id"]
        for question in ("two", "three"):
            turn = await ask(client, question, assistant="up", conversation_id=conversation)
            await follow(client, turn["events_url"])
    bodies = [record["body"] for record in upstream.requests()]
    assert [m["content"] for m in bodies[2]["messages"] if m["role"] != "system"] == [
        "one",
        "".join(ANSWER),
        "two",
        "Done.",
        "three",
    ]
    for body in bodies:
        assert all(set(m) == {"role", "content"} for m in body["messages"])
        sent = str(body["messages"])
        assert "greeting" not in sent and "secret" not in sent and "think>" not in sent


@pytest.mark.parametrize("broker_url", ["memory", "redis"], indirect=True)
async def test_a_listener_resumes_mid_reasoning_with_last_event_id(
    make_server: ServerFactory, upstream: Upstream
) -> None:
    thought = [f"step {i}. " for i in range(12)]
    behaviour = {
        "deltas": [{"reasoning_content": t} for t in thought] + [{"content": "Done."}],
        "delay_ms": 60,
    }
    server = gateway_for(make_server, upstream)
    upstream.script(behaviour)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        started = await ask(client, "hi", assistant="up")
        async with client.stream("GET", started["events_url"]) as response:
            head = await read_events(response, limit=4)  # start and three reasoning events
        assert [e.event for e in head] == ["start"] + ["reasoning"] * 3
        rest = await follow(client, started["events_url"], last_event_id=head[-1].id)
    assert number(rest[0]) == number(head[-1]) + 1  # nothing twice, nothing missing
    assert rest[0].event == "reasoning"  # resumed while the model was still thinking
    events = head + rest
    assert [number(e) for e in events] == list(range(1, len(events) + 1))
    assert reasoning_of(events) == "".join(thought)
    assert text_of(events) == "Done." and events[-1].event == "end"
