"""Tool calls through ``/v1/chat/completions``, relayed exactly.

The official ``openai`` SDK is the client, a real gateway sits in the middle and
the scripted upstream (``tests/upstream``) plays the model: it records the body
it received (the request side: ``tools``, ``tool_choice``,
``parallel_tool_calls`` and a history holding calls and their results must
arrive as the client wrote them) and replays a raw event stream of tool-call
fragments, cut byte by byte on the wire (the response side: the client must
put together exactly the calls the model made).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionMessageParam

from conftest import RunningServer, ServerFactory
from helpers import ask, follow, text_of
from upstream.control import Upstream
from upstream.fixtures import Gateway

pytestmark = [pytest.mark.integration]

USER: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Weather in Zürich?"}]
WEATHER: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city, for some days.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "note": {"type": "string"},
                "days": {"type": "array", "items": {"type": "integer"}},
            },
            "required": ["city", "note", "days"],
            "additionalProperties": False,
        },
        "strict": True,
    },
}
TIME: dict[str, Any] = {
    "type": "function",
    "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}},
}
ARGS = '{"city": "Zürich", "note": "😀 über", "days": [1, 2]}'
"""Arguments with two-byte and four-byte UTF-8 (the emoji is a surrogate pair in JSON)."""


@pytest.fixture
def server(upstream: Upstream, gateway: Gateway) -> RunningServer:
    return gateway(upstream)


@pytest.fixture
def sdk(server: RunningServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=30
    ) as client:
        yield client


def received(upstream: Upstream, index: int = -1) -> dict[str, Any]:
    body: dict[str, Any] = upstream.requests()[index]["body"]
    return body


# --- the request side ---------------------------------------------------------------------


CHOICES: list[Any] = [
    "auto",
    "none",
    "required",
    {"type": "function", "function": {"name": "get_time"}},
]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("choice", CHOICES)
def test_tools_tool_choice_and_parallel_tool_calls_reach_the_upstream_exactly(
    sdk: openai.OpenAI, upstream: Upstream, stream: bool, choice: Any
) -> None:
    raw = sdk.chat.completions.with_raw_response.create(
        model="up",
        messages=USER,
        tools=[WEATHER, TIME],  # type: ignore[list-item]
        tool_choice=choice,
        parallel_tool_calls=False,
        stream=stream,
    )
    assert "x-typewriter-ignored-fields" not in raw.headers  # known now, not dropped
    if stream:
        with raw.parse() as chunks:  # type: ignore[union-attr]
            assert [c for c in chunks if c.choices and c.choices[0].finish_reason == "stop"]
    else:
        assert raw.parse().choices[0].message.content  # type: ignore[union-attr]
    body = received(upstream)
    assert body["tools"] == [WEATHER, TIME]
    assert body["tool_choice"] == choice
    assert body["parallel_tool_calls"] is False


def test_a_tool_is_sent_as_written_with_its_own_fields_and_nulls(
    sdk: openai.OpenAI, upstream: Upstream
) -> None:
    """Nothing the client wrote is dropped or added: ``null``s, unknown keys, key order."""
    odd: dict[str, Any] = {
        "type": "function",
        "function": {
            "name": "lookup-2",
            "description": None,
            "parameters": {"type": "object", "properties": {"q": {"default": None}}},
            "strict": None,
            "x-vendor": {"cache": True},
        },
        "x-extra": 1,
    }
    sdk.chat.completions.create(model="up", messages=USER, tools=[odd])  # type: ignore[list-item]
    sent = received(upstream)
    assert json.dumps(sent["tools"]) == json.dumps([odd])  # same keys, values and order
    assert "tool_choice" not in sent and "parallel_tool_calls" not in sent


def call(id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": id, "type": "function", "function": {"name": name, "arguments": arguments}}


BAD: list[tuple[dict[str, Any], str]] = [
    ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
    ({"tools": [{"type": "custom", "custom": {"name": "x"}}]}, "tools[0].type"),
    ({"tools": [{"type": "function"}]}, "tools[0].function"),
    (
        {"tools": [{"type": "function", "function": {"name": "has space"}}]},
        "tools[0].function.name",
    ),
    ({"tools": [{"type": "function", "function": {"name": "x" * 65}}]}, "tools[0].function.name"),
    ({"tools": [{"type": "function", "function": {"name": ""}}]}, "tools[0].function.name"),
    ({"tools": [{"type": "function", "function": {}}]}, "tools[0].function.name"),
    (
        {"tools": [{"type": "function", "function": {"name": "f", "parameters": "{}"}}]},
        "tools[0].function.parameters",
    ),
    (
        {"tools": [{"type": "function", "function": {"name": "f", "description": 3}}]},
        "tools[0].function.description",
    ),
    (
        {"tools": [{"type": "function", "function": {"name": "f", "strict": "yes"}}]},
        "tools[0].function.strict",
    ),
    ({"tools": []}, "tools"),
    ({"tools": {"type": "function"}}, "tools"),
    ({"tools": [TIME, TIME]}, "tools"),
    ({"tool_choice": "auto"}, "tool_choice"),  # without tools
    ({"tools": [TIME], "tool_choice": "sometimes"}, "tool_choice"),
    ({"tools": [TIME], "tool_choice": {"type": "function"}}, "tool_choice"),
    (
        {"tools": [TIME], "tool_choice": {"type": "function", "function": {"name": "get_weather"}}},
        "tool_choice",
    ),
    ({"tools": [TIME], "tool_choice": {"type": "allowed_tools"}}, "tool_choice"),
    ({"parallel_tool_calls": True}, "parallel_tool_calls"),  # without tools
    ({"tools": [TIME], "parallel_tool_calls": "no"}, "parallel_tool_calls"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
    ({"messages": [{"role": "tool", "tool_call_id": "c1"}]}, "messages[0].content"),
    (
        {"messages": [{"role": "user", "content": "x", "tool_call_id": "c1"}]},
        "messages[0].tool_call_id",
    ),
    (
        {"messages": [{"role": "user", "content": "x", "tool_calls": [call("c", "f", "{}")]}]},
        "messages[0].tool_calls",
    ),
    (
        {
            "messages": [
                {"role": "assistant", "tool_calls": [{**call("c", "f", "{}"), "type": "custom"}]}
            ]
        },
        "messages[0].tool_calls[0].type",
    ),
    (
        {
            "messages": [
                {
                    "role": "assistant",
                    "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f"}}],
                }
            ]
        },
        "messages[0].tool_calls[0].function.arguments",
    ),
    (
        {"messages": [{"role": "assistant", "tool_calls": [call("c", "f", {"a": 1})]}]},  # type: ignore[arg-type]
        "messages[0].tool_calls[0].function.arguments",
    ),
]


@pytest.mark.parametrize(("fields", "param"), BAD)
def test_a_wrong_tool_field_is_refused_naming_it_and_nothing_goes_upstream(
    sdk: openai.OpenAI, upstream: Upstream, fields: dict[str, Any], param: str
) -> None:
    body = {"model": "up", "messages": USER, **fields}
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.post("/chat/completions", body=body, cast_to=ChatCompletion)
    assert caught.value.status_code == 400
    assert caught.value.type == "invalid_request_error"
    assert caught.value.code == "invalid_field"
    assert caught.value.param == param
    assert upstream.requests() == []


def test_values_json_reads_but_cannot_send_are_refused(server: RunningServer) -> None:
    """``NaN`` and a lone surrogate parse in Python but cannot be written upstream: a
    refusal naming the field, not a request that fails on its way out."""

    def tool(value: Any) -> dict[str, Any]:
        return {"type": "function", "function": {"name": "f", "parameters": {"x": value}}}

    def called(id: str, arguments: str) -> list[dict[str, Any]]:
        return [{"role": "assistant", "tool_calls": [call(id, "f", arguments)]}]

    choice = {"type": "function", "function": {"name": "f"}, "x": float("inf")}
    cases: list[tuple[dict[str, Any], str]] = [
        ({"tools": [tool(float("nan"))]}, "tools"),
        ({"tools": [tool("\ud800")]}, "tools"),
        ({"tools": [tool(1)], "tool_choice": choice}, "tool_choice"),
        ({"messages": called("c", "\ud800")}, "messages[0].tool_calls[0].function.arguments"),
        ({"messages": called("\udc00", "{}")}, "messages[0].tool_calls[0].id"),
        (
            {"messages": [{"role": "tool", "tool_call_id": "\ud800", "content": ""}]},
            "messages[0].tool_call_id",
        ),
    ]
    for fields, param in cases:
        body = {"model": "up", "messages": USER, **fields}
        response = httpx.post(
            f"{server.url}/v1/chat/completions",
            content=json.dumps(body).encode(),  # NaN, Infinity and "\\ud800" as Python writes them
            headers={"content-type": "application/json"},
        )
        assert response.status_code == 400, (fields, response.text)
        assert response.json()["error"]["param"] == param, fields


HISTORY: list[dict[str, Any]] = [
    {"role": "system", "content": "Use the tools."},
    {"role": "user", "content": "Weather in Zürich and the time?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            call("call_w", "get_weather", ARGS),
            call("call_t", "get_time", "{}"),
        ],
    },
    {"role": "tool", "tool_call_id": "call_w", "content": '{"temp": 21}'},
    {"role": "tool", "tool_call_id": "call_t", "content": "12:00"},
]


def test_a_history_of_calls_and_results_reaches_the_upstream_exactly(
    sdk: openai.OpenAI, upstream: Upstream
) -> None:
    answer = sdk.chat.completions.create(model="up", messages=HISTORY, tools=[WEATHER, TIME])  # type: ignore[arg-type,list-item]
    assert answer.choices[0].message.content == "Hello from the test upstream."
    assert received(upstream)["messages"] == HISTORY


def test_tool_parts_are_normalised_only_where_openai_allows_two_spellings(
    sdk: openai.OpenAI, upstream: Upstream
) -> None:
    """Text parts become one string, as for every message; ``tool_calls: []`` is no calls;
    ``name`` goes with the message; an orphan result goes too (the upstream decides)."""
    messages: list[Any] = [
        {"role": "user", "content": "hi", "name": "ada"},
        {"role": "assistant", "content": "no call", "tool_calls": []},
        {"role": "assistant", "content": "calling", "tool_calls": [call("c1", "f", "{}")]},
        {"role": "tool", "tool_call_id": "c1", "content": [{"type": "text", "text": "o"}] * 2},
        {"role": "tool", "tool_call_id": "answers-nothing", "content": "late"},
    ]
    sdk.chat.completions.create(model="up", messages=messages)
    assert received(upstream)["messages"] == [
        {"role": "user", "content": "hi", "name": "ada"},
        {"role": "assistant", "content": "no call"},
        {"role": "assistant", "content": "calling", "tool_calls": [call("c1", "f", "{}")]},
        {"role": "tool", "tool_call_id": "c1", "content": "oo"},
        {"role": "tool", "tool_call_id": "answers-nothing", "content": "late"},
    ]


def test_call_arguments_count_against_max_message_chars(
    upstream: Upstream, make_server: ServerFactory
) -> None:
    server = make_server(
        upstreams=[{"name": "u", "base_url": upstream.base_url}],
        assistants=[{"name": "up", "model": "test-model"}],
        max_message_chars=40,
    )
    long_call: list[Any] = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "x" * 20, "tool_calls": [call("c", "f", "y" * 21)]},
        {"role": "tool", "tool_call_id": "c", "content": "ok"},
    ]
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="-", max_retries=0) as sdk:
        with pytest.raises(openai.BadRequestError) as caught:
            sdk.chat.completions.create(model="up", messages=long_call)
        assert caught.value.param == "messages[1].content"
        assert "41 characters; the limit is 40" in caught.value.message
        assert upstream.requests() == []
        long_call[1]["tool_calls"][0]["function"]["arguments"] = "y" * 20
        assert sdk.chat.completions.create(model="up", messages=long_call).choices


@pytest.mark.anyio
async def test_the_chat_api_has_no_tools(upstream: Upstream, server: RunningServer) -> None:
    """``/v1/chat`` stays a chat API: ``tools`` is an unknown field there (422 naming it),
    and a conversation's history reaches the model as plain turns."""
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        refused = await client.post(
            "/v1/chat", json={"message": "hi", "assistant": "up", "tools": [WEATHER]}
        )
        assert refused.status_code == 422, refused.text
        assert [f["field"] for f in refused.json()["error"]["fields"]] == ["tools"]
        assert upstream.requests() == []
        first = await ask(client, "first", assistant="up")
        assert text_of(await follow(client, first["events_url"]))
        conversation = first["conversation_id"]
        second = await ask(client, "second", assistant="up", conversation_id=conversation)
        assert text_of(await follow(client, second["events_url"]))
    answer = "Hello from the test upstream."
    sent = received(upstream)
    assert sent["messages"] == [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": answer},
        {"role": "user", "content": "second"},
    ]
    assert not {"tools", "tool_choice", "parallel_tool_calls"} & set(sent)
