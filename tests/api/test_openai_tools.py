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
from itertools import zip_longest
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from conftest import RunningServer, ServerFactory
from helpers import ask, follow, text_of
from refusals import refused_naming
from typewriter.token_estimate import estimate_prompt_tokens
from upstream import shapes
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
    (  # OpenAI's limit, checked before the tools themselves (each costs its validation)
        {"tools": [{"type": "function", "function": {"name": f"f{i}"}} for i in range(129)]},
        "tools",
    ),
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
    assert refused_naming(sdk, upstream, body, param).code == "invalid_field"


def test_values_json_reads_but_cannot_send_are_refused(server: RunningServer) -> None:
    """``NaN`` and a lone surrogate parse in Python but cannot be written upstream: a
    refusal naming the field, not a request that fails on its way out."""

    def tool(value: Any) -> dict[str, Any]:
        return {"type": "function", "function": {"name": "f", "parameters": {"x": value}}}

    def called(id: str, arguments: str) -> list[dict[str, Any]]:
        return [{"role": "assistant", "tool_calls": [call(id, "f", arguments)]}]

    choice = {"type": "function", "function": {"name": "f"}, "x": float("inf")}
    schema = {"name": "a", "schema": {"type": "object", "x": float("nan")}}
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
        # The same holds for the other fields sent as written (a 500 before).
        ({"stop": ["\ud800"]}, "stop"),
        ({"user": "\udfff"}, "user"),
        ({"response_format": {"type": "json_schema", "json_schema": schema}}, "response_format"),
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


def test_the_prompt_estimate_counts_call_arguments(sdk: openai.OpenAI, upstream: Upstream) -> None:
    """An upstream that counts nothing leaves the gateway to estimate the prompt: the calls'
    arguments are read by the model, so they count with the text."""
    upstream.script({"usage": None})
    usage = sdk.chat.completions.create(model="up", messages=HISTORY).usage  # type: ignore[arg-type]
    assert usage is not None and (usage.model_extra or {}).get("estimated") is True
    texts = [
        "Use the tools.",
        "Weather in Zürich and the time?",
        ARGS + "{}",
        '{"temp": 21}',
        "12:00",
    ]
    assert usage.prompt_tokens == estimate_prompt_tokens(texts)


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


# --- the response side --------------------------------------------------------------------


PIECES = ['{"ci', 'ty": "Zü', 'rich", "note": "\ud83d', "\ude00 üb", 'er", "days": [1', ", 2]}"]
"""``ARGS`` as a model might stream it: cut mid-key, mid-string, between the two halves of
the emoji's surrogate pair (each half a ``\\uXXXX`` escape of its own fragment) and in a list."""
TIME_STRICT: dict[str, Any] = {"type": "function", "function": {**TIME["function"], "strict": True}}


def escaped(chunks: list[shapes.Chunk]) -> list[shapes.Chunk]:
    """Objects holding a lone surrogate as raw ``data:`` text with ``\\uXXXX`` escapes (raw
    UTF-8 cannot carry half a pair); the others stay objects, sent as raw UTF-8."""

    def lone(item: shapes.Chunk) -> bool:
        return any("\ud800" <= c <= "\udfff" for c in json.dumps(item, ensure_ascii=False))

    return [f"data: {json.dumps(c, separators=(',', ':'))}\n\n" if lone(c) else c for c in chunks]


def test_the_sdk_puts_together_a_call_cut_anywhere_exactly(
    sdk: openai.OpenAI, upstream: Upstream
) -> None:
    """Mid-JSON, mid-UTF-8 on the wire (one byte per write), a surrogate pair across two
    fragments: the SDK's stream helper ends with the arguments the model wrote."""
    assert "".join(PIECES).encode("utf-16", "surrogatepass").decode("utf-16") == ARGS
    chunks = escaped(shapes.openai_tool_calls([("get_weather", PIECES)], parallel=False))
    upstream.script({"chunks": chunks, "raw_utf8": True, "write_bytes": 1})
    with sdk.chat.completions.stream(
        model="up",
        messages=USER,
        tools=[WEATHER],  # type: ignore[list-item]
        parallel_tool_calls=False,
    ) as stream:
        pieces = [
            e.arguments_delta for e in stream if e.type == "tool_calls.function.arguments.delta"
        ]
        final = stream.get_final_completion()
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert not choice.message.content  # "": the role chunk went out before the first call
    [made] = choice.message.tool_calls or []
    assert (made.id, made.type, made.function.name) == ("call_0", "function", "get_weather")
    assert made.function.arguments == ARGS
    assert made.function.parsed_arguments == json.loads(ARGS)
    # Relayed one for one; the high half waited for its low half to be sent whole.
    assert pieces == [
        "",
        '{"ci',
        'ty": "Zü',
        'rich", "note": "',
        "😀 üb",
        'er", "days": [1',
        ", 2]}",
    ]
    assert received(upstream)["tools"] == [WEATHER]


def interleaved(calls: list[shapes.ToolCall]) -> list[shapes.Chunk]:
    """OpenAI's parallel calls, their fragments taken in turns (0, 1, 0, 1, …) rather than
    one call after the other: only ``index`` says which call a fragment belongs to."""
    chunks = shapes.openai_tool_calls(calls)
    fragments = [c for c in chunks if isinstance(c, dict) and c["choices"] and _calls_of(c)]
    rest = [c for c in chunks if not any(c is f for f in fragments)]
    by_call: dict[int, list[shapes.Chunk]] = {}
    for fragment in fragments:
        by_call.setdefault(_calls_of(fragment)[0]["index"], []).append(fragment)
    turns = [f for group in zip_longest(*by_call.values()) for f in group if f is not None]
    return turns + rest


def _calls_of(chunk: Any) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = chunk["choices"][0]["delta"].get("tool_calls") or []
    return calls


PARALLEL: list[shapes.ToolCall] = [
    ("get_weather", shapes.split(ARGS, [3, 17, 30])),
    ("get_time", ['{"z', 'one": "CET"}']),
]
GATHERED: list[dict[str, Any]] = [
    {"id": f"call_{i}", "type": "function", "function": {"name": name, "arguments": arguments}}
    for i, (name, arguments) in enumerate([("get_weather", ARGS), ("get_time", '{"zone": "CET"}')])
]


def test_parallel_calls_are_told_apart_by_index_streamed_and_not(
    sdk: openai.OpenAI, upstream: Upstream
) -> None:
    """OpenAI streams parallel calls one after the other, which the SDK's stream helper
    expects; fragments of two calls taken in turns are relayed as they came, and a client
    that gathers by ``index`` (as the SDK's chunks allow) still gets both calls whole."""
    tools: Any = [WEATHER, TIME_STRICT]
    upstream.script({"chunks": shapes.openai_tool_calls(PARALLEL), "raw_utf8": True})
    with sdk.chat.completions.stream(model="up", messages=USER, tools=tools) as stream:
        final = stream.get_final_completion()
    calls = final.choices[0].message.tool_calls or []
    for made, expected in zip(calls, GATHERED, strict=True):
        without = {"function": {"parsed_arguments"}}
        assert made.model_dump(include={"id", "type", "function"}, exclude=without) == expected
        assert made.function.parsed_arguments == json.loads(expected["function"]["arguments"])
    assert final.choices[0].finish_reason == "tool_calls"

    chunks = interleaved(PARALLEL)
    upstream.script({"chunks": chunks, "raw_utf8": True, "write_bytes": 3})
    gathered: dict[int, dict[str, Any]] = {}
    finish_reasons = []
    with sdk.chat.completions.create(model="up", messages=USER, tools=tools, stream=True) as got:
        for chunk in got:
            choice = chunk.choices[0]
            finish_reasons.append(choice.finish_reason)
            for fragment in choice.delta.tool_calls or []:
                call = gathered.setdefault(fragment.index, {"function": {"arguments": ""}})
                if fragment.id is not None:
                    call |= {"id": fragment.id, "type": fragment.type}
                assert fragment.function is not None
                if fragment.function.name is not None:
                    call["function"]["name"] = fragment.function.name
                call["function"]["arguments"] += fragment.function.arguments or ""
    assert [gathered[i] for i in sorted(gathered)] == GATHERED
    assert finish_reasons[-1] == "tool_calls"

    upstream.script({"chunks": chunks, "raw_utf8": True, "write_bytes": 3})
    whole = sdk.chat.completions.create(model="up", messages=USER, tools=tools)
    message = whole.choices[0].message
    assert message.content is None and whole.choices[0].finish_reason == "tool_calls"
    assert [c.model_dump() for c in message.tool_calls or []] == GATHERED
    assert all(r["body"]["tools"] == tools for r in upstream.requests())


def test_a_two_round_tool_conversation(sdk: openai.OpenAI, upstream: Upstream) -> None:
    """Round 1 streams a call; the client runs it and sends the SDK's own message back with
    the result; the upstream receives both exactly, and answers in text."""
    messages: list[Any] = list(USER)
    upstream.script({"chunks": escaped(shapes.openai_tool_calls([("get_weather", PIECES)]))})
    with sdk.chat.completions.stream(model="up", messages=messages, tools=[WEATHER]) as stream:  # type: ignore[list-item]
        called = stream.get_final_completion().choices[0].message
    [made] = called.tool_calls or []
    messages += [called, {"role": "tool", "tool_call_id": made.id, "content": '{"temp": 21}'}]
    upstream.script({"tokens": ["It is ", "21 °C."]})
    answer = sdk.chat.completions.create(model="up", messages=messages, tools=[WEATHER])  # type: ignore[list-item]
    assert answer.choices[0].message.content == "It is 21 °C."
    assert answer.choices[0].finish_reason == "stop"
    assert received(upstream)["messages"] == [
        *USER,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_0",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": ARGS},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_0", "content": '{"temp": 21}'},
    ]
    assert received(upstream)["tools"] == [WEATHER]


@pytest.mark.anyio
async def test_the_streamed_bytes_are_openais_tool_call_chunks(
    upstream: Upstream, server: RunningServer
) -> None:
    """Every ``data:`` line as OpenAI writes it: ``id`` and ``type: "function"`` with a call's
    first fragment (and its name), then ``index`` and an ``arguments`` piece, one chunk per
    fragment the upstream sent, ``finish_reason: "tool_calls"``, ``[DONE]``."""
    upstream.script({"chunks": interleaved(PARALLEL), "raw_utf8": True, "write_bytes": 5})
    body = {"model": "up", "messages": USER, "stream": True, "tools": [WEATHER, TIME]}
    async with (
        httpx.AsyncClient(base_url=server.url, timeout=30) as client,
        client.stream("POST", "/v1/chat/completions", json=body) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        wire = b"".join([piece async for piece in response.aiter_bytes()])
    events = wire.decode().split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""]
    assert all(e.startswith("data: {") for e in events[:-2])
    chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-2]]
    head = {k: chunks[0][k] for k in ("id", "created")}

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return {**head, "object": "chat.completion.chunk", "model": "up", "choices": [choice]}

    def opening(index: int, name: str) -> dict[str, Any]:
        call = {"index": index, "id": f"call_{index}", "type": "function"}
        return chunk({"tool_calls": [{**call, "function": {"name": name, "arguments": ""}}]})

    def piece(index: int, arguments: str) -> dict[str, Any]:
        return chunk({"tool_calls": [{"index": index, "function": {"arguments": arguments}}]})

    weather, time = (arguments for _, arguments in PARALLEL)
    assert chunks == [
        chunk({"role": "assistant", "content": ""}),
        opening(0, "get_weather"),
        opening(1, "get_time"),
        *[p for pair in zip(
            [piece(0, a) for a in weather], [piece(1, a) for a in time], strict=False
        ) for p in pair],
        *[piece(0, a) for a in weather[len(time):]],
        chunk({}, "tool_calls"),
    ]  # fmt: skip
    assert received(upstream)["tools"] == [WEATHER, TIME]


def test_a_hundred_and_twenty_eight_tools_are_taken(sdk: openai.OpenAI, upstream: Upstream) -> None:
    tools = [{"type": "function", "function": {"name": f"f{i}"}} for i in range(128)]
    sdk.chat.completions.create(model="up", messages=USER, tools=tools)  # type: ignore[arg-type]
    assert upstream.requests()[-1]["body"]["tools"] == tools
