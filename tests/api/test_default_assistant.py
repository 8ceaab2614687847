"""The default assistant: who answers when a request names none, over real HTTP.

Once an operator serves assistants of their own, the simulated ``default`` is gone, and
everything that names no assistant (the README's curl, the Python client, ``typewriter
chat``, the page) must still be answered: by ``default_assistant``, or the first configured
assistant. A conversation keeps its assistant: a question into it that names none is
answered by the assistant it was made with.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect, sync_playwright

from browser import CHROMIUM, CHROMIUM_ARGS
from conftest import RunningServer, ServerFactory, read_events
from helpers import JSON, ask, follow, last, text_of
from typewriter.client import Client
from typewriter.events import Delta, Start
from typewriter.models.simulated import CANNED_ANSWER
from upstream.control import Upstream

pytestmark = [pytest.mark.integration]

HELLO = "Hello from the test upstream."


def own_assistants(upstream: Upstream, *names: str, **settings: Any) -> dict[str, Any]:
    """Settings serving only the given assistants, all on ``upstream`` (no simulated ones)."""
    return {
        "upstreams": [{"name": "u", "base_url": upstream.base_url, "bench_seconds": 60}],
        "assistants": [
            {"name": name, "model": "test-model", "system_prompt": f"You are {name}."}
            for name in names
        ],
        **settings,
    }


async def asked(client: httpx.AsyncClient, message: str, **fields: Any) -> tuple[str, str, str]:
    """Ask, follow to the end: ``(assistant that answered, its text, conversation id)``."""
    started = await ask(client, message, **fields)
    events = await follow(client, started["events_url"])
    assert last(events, "end")["finish_reason"] == "stop"
    return last(events, "start")["model"], text_of(events), started["conversation_id"]


@pytest.fixture
def own(make_server: ServerFactory, upstream: Upstream) -> RunningServer:
    """A gateway serving ``first`` and ``second`` of its own, no ``default`` among them."""
    return make_server(**own_assistants(upstream, "first", "second"))


# -- asking without naming an assistant ----------------------------------------------------


@pytest.mark.anyio
async def test_own_assistants_answer_an_ask_that_names_none(own: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=own.url, timeout=30) as client:
        listed = (await client.get("/v1/assistants")).json()
        assert listed["default"] == "first"  # the first configured one
        assistant, text, _ = await asked(client, "hi")
    assert (assistant, text) == ("first", HELLO)


@pytest.mark.anyio
async def test_the_curl_of_the_readme_works_with_own_assistants(own: RunningServer) -> None:
    """``curl -N …/v1/chat -H 'Accept: text/event-stream' -d '{"message": …}'``."""
    async with (
        httpx.AsyncClient(base_url=own.url, timeout=30) as client,
        client.stream(
            "POST",
            "/v1/chat",
            json={"message": "What is SSE?"},
            headers={"accept": "text/event-stream"},
        ) as response,
    ):
        assert response.status_code == 200, await response.aread()
        events = await read_events(response)
    assert last(events, "start")["model"] == "first"
    assert text_of(events) == HELLO


@pytest.mark.anyio
async def test_default_assistant_names_the_one_that_answers(make_server: ServerFactory) -> None:
    server = make_server(default_assistant="echo")
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        assert (await client.get("/v1/assistants")).json()["default"] == "echo"
        assistant, text, _ = await asked(client, "say this back")
        assert (assistant, text) == ("echo", "say this back")
        made = await client.post("/v1/conversations", json={"title": "t"})
        assert made.status_code == 201 and made.json()["assistant"] == "echo"
        explicit_null = await asked(client, "null names none", assistant=None)
        assert explicit_null[:2] == ("echo", "null names none")


@pytest.mark.anyio
async def test_the_simulated_default_stays_the_default_beside_own_ones(
    make_server: ServerFactory, upstream: Upstream
) -> None:
    server = make_server(**own_assistants(upstream, "first"), builtin_assistants=True)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        assert (await client.get("/v1/assistants")).json()["default"] == "default"
        assistant, text, _ = await asked(client, "hi")
        assert (assistant, text) == ("default", CANNED_ANSWER)


@pytest.mark.anyio
async def test_a_new_conversation_takes_the_default_with_own_assistants(
    own: RunningServer,
) -> None:
    async with httpx.AsyncClient(base_url=own.url, timeout=30) as client:
        made = await client.post("/v1/conversations", content=b"{}", headers=JSON)
        assert made.status_code == 201, made.text
        assert made.json()["assistant"] == "first"
        unknown = await client.post("/v1/conversations", json={"assistant": "default"})
        assert unknown.status_code == 422
        assert unknown.json()["error"]["fields"][0]["field"] == "assistant"


def test_the_python_client_works_with_own_assistants(own: RunningServer) -> None:
    with Client(own.url) as client:
        events = [item.event for item in client.stream("What is SSE?")]
    assert isinstance(events[0], Start) and events[0].model == "first"
    assert "".join(e.text for e in events if isinstance(e, Delta)) == HELLO


# -- a conversation keeps its assistant ----------------------------------------------------


@pytest.mark.anyio
async def test_a_conversation_is_answered_by_its_own_assistant(make_server: ServerFactory) -> None:
    """Asked and regenerated without naming one: the conversation's assistant answers, not
    the server's default."""
    server = make_server(default_assistant="default")
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        assistant, _, conversation = await asked(client, "first question", assistant="echo")
        assert assistant == "echo"
        assistant, text, again = await asked(client, "second", conversation_id=conversation)
        assert (assistant, text, again) == ("echo", "second", conversation)
        messages = (await client.get(f"/v1/conversations/{conversation}")).json()["messages"]
        regenerated = await client.post(f"/v1/messages/{messages[-1]['id']}/regenerate")
        assert regenerated.status_code == 202, regenerated.text
        events = await follow(client, regenerated.json()["events_url"])
        assert (last(events, "start")["model"], text_of(events)) == ("echo", "second")
        unknown = await client.post(
            "/v1/chat", json={"message": "x", "conversation_id": "conv_nothere"}
        )
        assert unknown.status_code == 404
        assert unknown.json()["error"]["code"] == "conversation_not_found"


@pytest.mark.anyio
async def test_naming_another_assistant_answers_once_and_keeps_the_conversations(
    client: httpx.AsyncClient,
) -> None:
    _, _, conversation = await asked(client, "one", assistant="echo")
    assistant, text, _ = await asked(
        client, "two", conversation_id=conversation, assistant="default"
    )
    assert (assistant, text) == ("default", CANNED_ANSWER)
    stored = (await client.get(f"/v1/conversations/{conversation}")).json()
    assert stored["assistant"] == "echo"  # the conversation's assistant is unchanged
    assistant, text, _ = await asked(client, "three", conversation_id=conversation)
    assert (assistant, text) == ("echo", "three")


@pytest.mark.anyio
async def test_a_conversation_outlives_its_assistant(
    make_server: ServerFactory, upstream: Upstream, tmp_path: Path
) -> None:
    """Its assistant no longer served (the operator configured others): the default
    answers, both a new question and a regenerate, instead of a 422 on every ask."""
    before = make_server(data_dir=tmp_path)
    async with httpx.AsyncClient(base_url=before.url, timeout=30) as client:
        _, _, conversation = await asked(client, "hello", assistant="echo")
        question = (await client.get(f"/v1/conversations/{conversation}")).json()["messages"][0]
    before.stop()

    after = make_server(data_dir=tmp_path, **own_assistants(upstream, "first"))
    async with httpx.AsyncClient(base_url=after.url, timeout=30) as client:
        assistant, text, same = await asked(client, "still there?", conversation_id=conversation)
        assert (assistant, text, same) == ("first", HELLO, conversation)
        answered = await client.post(f"/v1/messages/{question['id']}/regenerate")
        assert answered.status_code == 202, answered.text
        events = await follow(client, answered.json()["events_url"])
        assert last(events, "start")["model"] == "first"
        # naming the gone assistant is still the caller's mistake
        gone = await client.post(
            "/v1/chat", json={"message": "x", "conversation_id": conversation, "assistant": "echo"}
        )
        assert gone.status_code == 422


# -- system prompts ------------------------------------------------------------------------


@pytest.mark.anyio
async def test_system_prompts_are_shown_only_with_show_system_prompts(
    own: RunningServer, make_server: ServerFactory, upstream: Upstream
) -> None:
    async with httpx.AsyncClient(base_url=own.url, timeout=30) as client:
        listed = (await client.get("/v1/assistants")).json()["data"]
    assert [a["name"] for a in listed] == ["first", "second"]
    assert all("system_prompt" not in a for a in listed)
    assert "You are first." not in str(listed)

    shown = make_server(**own_assistants(upstream, "first", show_system_prompts=True))
    async with httpx.AsyncClient(base_url=shown.url, timeout=30) as client:
        [first] = (await client.get("/v1/assistants")).json()["data"]
    assert first["system_prompt"] == "You are first."


# -- the page ------------------------------------------------------------------------------


@pytest.fixture
def chromium() -> Iterator[Any]:
    with sync_playwright() as driver:
        browser = driver.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


def test_the_page_picks_the_servers_default(make_server: ServerFactory, chromium: Any) -> None:
    server = make_server(default_assistant="echo")
    context = chromium.new_context()
    try:
        page = context.new_page()
        page.goto(server.url + "/")
        picker = page.get_by_label("Assistant")
        expect(picker).to_have_value("echo", timeout=20_000)
        message = page.get_by_role("textbox", name="Message", exact=True)
        message.fill("picked by the server")
        message.press("Enter")
        answer = page.locator(".msg.assistant .md")
        expect(answer).to_have_text("picked by the server", timeout=20_000)
    finally:
        context.close()
