"""A model's reasoning, end to end: each upstream shape, the bound, show and hide, history.

A real gateway in front of the scripted upstream replaying the streams reasoning servers send
(``upstream.shapes``, each from its source): ``reasoning_content`` (DeepSeek, vLLM),
``reasoning`` (newer vLLM, OpenRouter, Ollama) and ``<think>…</think>`` inside the content
(a model served as plain text, read only for an assistant with ``think_tags``).
What a client sees is the stream's events and the stored conversation; what the model sees
is the request body the upstream recorded.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from conftest import RunningServer, ServerFactory, read_events
from helpers import ask, data_of, follow, text_of
from typewriter import sse
from upstream import shapes
from upstream.control import Upstream

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

THOUGHT = ["The user ", "asks for ", "a greeting."]
ANSWER = ["Hello", ", there", "!"]


def reasoning_of(events: list[sse.Event]) -> str:
    return "".join(data_of(e)["text"] for e in events if e.event == "reasoning")


def number(event: sse.Event) -> int:
    assert event.id is not None
    return int(event.id)


SHAPES = {
    "deepseek": shapes.deepseek_reasoning(THOUGHT, ANSWER),
    "vllm reasoning_content": shapes.vllm_reasoning(THOUGHT, ANSWER),
    "vllm reasoning": shapes.vllm_reasoning_field(THOUGHT, ANSWER),
    "ollama": shapes.ollama_openai(ANSWER, reasoning=THOUGHT),
}


def vllm(thought: list[str], answer: list[str], per_second: float = 0) -> dict[str, Any]:
    """A behaviour: vLLM's reasoning stream, its items paced ``per_second`` (0: at once)."""
    return {"chunks": shapes.vllm_reasoning(thought, answer), "tokens_per_second": per_second}


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


@dataclass
class Listening:
    """A client that asked, and its stream of the answer, open after the first events."""

    server: RunningServer
    client: httpx.AsyncClient
    started: dict[str, Any]
    response: httpx.Response
    head: list[sse.Event]


@asynccontextmanager
async def listening(
    make_server: ServerFactory, upstream: Upstream, model: dict[str, Any]
) -> AsyncIterator[Listening]:
    """Ask a gateway in front of ``model`` (a behaviour), open the answer's stream and read
    its first four events: with a model paced to think slowly, the start and three reasoning
    events, while the model is still thinking."""
    server = gateway_for(make_server, upstream)
    upstream.script(model)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        started = await ask(client, "hi", assistant="up")
        async with client.stream("GET", started["events_url"]) as response:
            head = await read_events(response, limit=4)
            yield Listening(server, client, started, response, head)


@pytest.mark.parametrize("shape", SHAPES)
async def test_each_reasoning_shape_is_its_own_event_kind_before_the_answer(
    make_server: ServerFactory, upstream: Upstream, shape: str
) -> None:
    server = gateway_for(make_server, upstream)
    upstream.script({"chunks": SHAPES[shape]})
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
    whole = shapes.think_text("Let me see.", "Four.")  # "<think>\nLet me see.\n</think>\n\nFour."
    server = gateway_for(make_server, upstream, think_tags=True)
    cuts = [[4, 11, 13, 17], list(range(1, len(whole)))]  # some cuts; every character apart
    for split_points in cuts:
        upstream.script({"chunks": shapes.think_in_content("Let me see.", "Four.", split_points)})
        events = await answer(server)
        assert (reasoning_of(events), text_of(events)) == ("Let me see.\n", "Four.")
        stored = await stored_answer(server, conversation_of(events))
        assert (stored["text"], stored["reasoning"]) == ("Four.", "Let me see.\n")

    # Only the closing tag (the template opened the block): not told apart, it is text.
    upstream.script({"chunks": shapes.think_in_content("Plan.", "Done.", [3], opening_tag=False)})
    events = await answer(server)
    assert reasoning_of(events) == "" and text_of(events) == "\nPlan.\n</think>\n\nDone."

    plain = gateway_for(make_server, upstream)  # think_tags off: the tags are the answer's
    upstream.script({"chunks": shapes.think_in_content("Let me see.", "Four.", [4, 11])})
    events = await answer(plain)
    assert reasoning_of(events) == "" and text_of(events) == whole


async def test_reasoning_is_bounded_by_max_reasoning_chars_and_the_answer_goes_on(
    make_server: ServerFactory, upstream: Upstream
) -> None:
    server = gateway_for(
        make_server, upstream, settings={"max_reasoning_chars": 12, "max_answer_chars": 1000}
    )
    upstream.script(vllm(THOUGHT, ANSWER))
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
    upstream.script(vllm(THOUGHT, ANSWER))
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
        vllm(THOUGHT, ANSWER),
        {"chunks": shapes.think_in_content("secret plan", "Done.", [5])},
        {"tokens": ["ok"]},
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
    async with listening(make_server, upstream, vllm(thought, ["Done."], 16)) as listener:
        head = listener.head  # start and three reasoning events
        await listener.response.aclose()  # the listener goes, and comes back
        assert [e.event for e in head] == ["start"] + ["reasoning"] * 3
        url = listener.started["events_url"]
        rest = await follow(listener.client, url, last_event_id=head[-1].id)
    assert number(rest[0]) == number(head[-1]) + 1  # nothing twice, nothing missing
    assert rest[0].event == "reasoning"  # resumed while the model was still thinking
    events = head + rest
    assert [number(e) for e in events] == list(range(1, len(events) + 1))
    assert reasoning_of(events) == "".join(thought)
    assert text_of(events) == "Done." and events[-1].event == "end"


async def test_stop_mid_reasoning_keeps_the_reasoning_shown_so_far(
    make_server: ServerFactory, upstream: Upstream
) -> None:
    thought = [f"idea {i}. " for i in range(40)]
    async with listening(make_server, upstream, vllm(thought, ["never reached"], 20)) as listener:
        started, head = listener.started, listener.head
        cancelled = await listener.client.post(f"/v1/streams/{started['stream_id']}/cancel")
        assert cancelled.status_code in (200, 202, 204), cancelled.text
        rest = await read_events(listener.response)
    events = head + rest
    assert events[-1].event == "end" and data_of(events[-1])["finish_reason"] == "cancelled"
    seen = reasoning_of(events)
    assert 3 * len("idea 0. ") <= len(seen) < len("".join(thought))
    assert text_of(events) == ""
    stored = await stored_answer(listener.server, started["conversation_id"])
    assert (stored["text"], stored["reasoning"], stored["finish_reason"]) == ("", seen, "cancelled")
