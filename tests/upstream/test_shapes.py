"""The ``chunks`` behaviour and the real servers' shapes (``shapes.py``), seen on the wire.

A gateway test that replays "vLLM's reasoning stream" proves something only if the bytes the
gateway reads are the ones scripted: so each shape is read here raw, from a plain httpx client,
cut into the smallest writes the test asks for, and compared byte for byte.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from upstream import shapes
from upstream.control import Upstream, UpstreamError

pytest_plugins = ["upstream.fixtures"]
pytestmark = pytest.mark.integration

CHAT = {
    "model": "test-model",
    "messages": [{"role": "user", "content": "Hi"}],
    "stream": True,
    "stream_options": {"include_usage": True},
}
# Argument pieces cut mid-key and mid-value: '{"c', 'ity":"', 'Zü', 'rich","unit":"c"}'
WEATHER = shapes.split('{"city":"Zürich","unit":"c"}', [3, 9, 11])


@pytest.fixture
def http(upstream: Upstream) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=upstream.base_url, timeout=5.0, trust_env=False) as client:
        yield client


def raw_pieces(http: httpx.Client, body: dict[str, Any] = CHAT) -> list[bytes]:
    """The body as read, one piece per HTTP chunk (httpx never merges two)."""
    with http.stream("POST", "/chat/completions", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        return list(response.iter_raw())


SHAPES: dict[str, list[shapes.Chunk]] = {
    "openai_text": shapes.openai_text(["Hel", "lo ", "wörld"]),
    "openai_text_logprobs": shapes.openai_text(["Hi", "!"], logprobs=True, include_usage=False),
    "openai_tool_calls": shapes.openai_tool_calls(
        [("get_weather", WEATHER), ("get_time", ['{"tz":', '"CET"}'])], include_usage=True
    ),
    "openai_tool_calls_after_text": shapes.openai_tool_calls(
        [("get_weather", WEATHER)], parallel=False, content=["Let me ", "check."]
    ),
    "vllm_reasoning": shapes.vllm_reasoning(["Two ", "plus two."], ["4", "."]),
    "vllm_reasoning_field": shapes.vllm_reasoning_field(["Hmm"], ["Yes"], include_usage=False),
    "deepseek_reasoning": shapes.deepseek_reasoning(["The user ", "greets."], ["Hello", " 😊"]),
    "ollama_openai": shapes.ollama_openai(["<b>Hi</b> ", "& bye"], reasoning=["Think", "ing"]),
    "ollama_tool_call": shapes.ollama_openai([], calls=[("get_weather", '{"city":"Oslo"}')]),
    "think_in_content": shapes.think_in_content("Plan.", "Done.", [4, 11, 13, 17]),
    "think_closing_only": shapes.think_in_content("Plan.", "Done.", [8], opening_tag=False),
    "error_openai": shapes.error_mid_stream(["Half "], style="openai"),
    "error_openrouter": shapes.error_mid_stream(["Half "], style="openrouter"),
    "error_vllm": shapes.error_mid_stream(["Half "], "out of memory", style="vllm"),
    "no_done": shapes.no_done(["A", "B"]),
    "no_done_no_finish": shapes.no_done(["A", "B"], finish_reason=None),
    "keepalive_deepseek": shapes.keepalive_comments(["A", "B"], before=3, between=False),
    "keepalive_between": shapes.keepalive_comments(["A", "B"]),
    "keepalive_openrouter": shapes.keepalive_comments(
        ["A"], comment=shapes.OPENROUTER_PROCESSING, before=1
    ),
    "keepalive_sse_starlette": shapes.keepalive_comments(
        ["A"], comment=shapes.sse_starlette_ping(), before=1
    ),
}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_each_shape_is_replayed_byte_for_byte(
    name: str, upstream: Upstream, http: httpx.Client
) -> None:
    chunks = SHAPES[name]
    upstream.script(
        {"chunks": chunks, "tokens_per_second": 0},
        {"chunks": chunks, "tokens_per_second": 0, "raw_utf8": True, "write_bytes": 7},
    )
    assert b"".join(raw_pieces(http)) == shapes.wire(chunks)
    pieces = raw_pieces(http)
    assert b"".join(pieces) == shapes.wire(chunks, raw_utf8=True)
    assert max(len(piece) for piece in pieces) <= 7
    for record in upstream.requests():
        assert record["tokens_sent"] == len(chunks)
        assert record["completed"] is True
        assert record["headers_sent"] <= record["first_token_sent"]


def test_items_go_out_as_scripted_and_writes_split_them_anywhere(
    upstream: Upstream, http: httpx.Client
) -> None:
    chunks: list[shapes.Chunk] = [
        ": ping\n\n",
        {"choices": [{"delta": {"content": "été\u2028"}}]},
        'data: {"choices":[{"delta":{"con',  # one event written in two items
        'tent":"split"}}]}\n\n',
        "data: [DONE]\n\n",
    ]
    escaped = b'data: {"choices":[{"delta":{"content":"\\u00e9t\\u00e9\\u2028"}}]}\n\n'
    raw = 'data: {"choices":[{"delta":{"content":"été\u2028"}}]}\n\n'.encode()
    tail = b'data: {"choices":[{"delta":{"content":"split"}}]}\n\ndata: [DONE]\n\n'
    upstream.script({"chunks": chunks}, {"chunks": chunks, "raw_utf8": True, "write_bytes": 1})
    assert b"".join(raw_pieces(http)) == b": ping\n\n" + escaped + tail
    pieces = raw_pieces(http)
    assert b"".join(pieces) == b": ping\n\n" + raw + tail
    assert {len(piece) for piece in pieces} == {1}  # "é" is two writes: cut mid-character
    assert [r["tokens_sent"] for r in upstream.requests()] == [5, 5]


def test_chunks_ignore_what_the_request_asked(upstream: Upstream, http: httpx.Client) -> None:
    """A non-streaming request, or one without include_usage, still gets the script."""
    chunks = shapes.openai_text(["x"])
    upstream.script({"chunks": chunks}, {"chunks": chunks})
    assert b"".join(raw_pieces(http, {**CHAT, "stream": False})) == shapes.wire(chunks)
    assert b"".join(raw_pieces(http, {"model": "m", "messages": []})) == shapes.wire(chunks)


def test_tokens_per_second_paces_the_items(upstream: Upstream, http: httpx.Client) -> None:
    chunks = shapes.openai_text(["x"] * 7)  # 11 items: 10 gaps of 20 ms
    upstream.script({"chunks": chunks, "tokens_per_second": 50}, {"chunks": chunks})
    started = time.monotonic()
    assert b"".join(raw_pieces(http)) == shapes.wire(chunks)
    assert time.monotonic() - started >= 0.2
    started = time.monotonic()
    raw_pieces(http)  # the default 1000 items/s
    assert time.monotonic() - started < 0.2


def test_delays_hold_headers_and_the_first_item(upstream: Upstream, http: httpx.Client) -> None:
    upstream.script({"chunks": [": x\n\n"], "delay_headers_ms": 150, "delay_first_token_ms": 200})
    started = time.time()
    assert raw_pieces(http) == [b": x\n\n"]
    (record,) = upstream.requests()
    assert record["headers_sent"] - started >= 0.15
    assert record["first_token_sent"] - record["headers_sent"] >= 0.2


def test_drop_after_items_breaks_the_connection_there(
    upstream: Upstream, http: httpx.Client
) -> None:
    chunks = shapes.vllm_reasoning(["a", "b"], ["c"])
    upstream.script({"chunks": chunks, "drop_after_tokens": 3, "write_bytes": 5})
    received: list[bytes] = []
    with pytest.raises(httpx.RemoteProtocolError):
        with http.stream("POST", "/chat/completions", json=CHAT) as response:
            for piece in response.iter_raw():
                received.append(piece)
    assert b"".join(received) == shapes.wire(chunks[:3])
    (record,) = upstream.requests()
    assert record["tokens_sent"] == 3 and record["completed"] is False
    assert record["dropped"] is not None


def test_stall_after_items_sends_nothing_more(upstream: Upstream, http: httpx.Client) -> None:
    chunks = shapes.deepseek_reasoning(["a"], ["b"])
    upstream.script({"chunks": chunks, "stall_after_tokens": 2})
    received: list[bytes] = []
    with pytest.raises(httpx.ReadTimeout):
        with http.stream(
            "POST", "/chat/completions", json=CHAT, timeout=httpx.Timeout(5, read=0.3)
        ) as response:
            for piece in response.iter_raw():
                received.append(piece)
    assert b"".join(received) == shapes.wire(chunks[:2])
    record = upstream.wait_for_disconnect(0)
    assert record["tokens_sent"] == 2 and record["completed"] is False


@pytest.mark.parametrize(
    "bad",
    [
        {"chunks": [": x\n\n"], "tokens": ["a"]},
        {"chunks": [": x\n\n"], "echo": True},
        {"chunks": [": x\n\n"], "echo_messages": True},
        {"chunks": [": x\n\n"], "status": 500},
        {"chunks": [": x\n\n"], "finish_reason": None},
        {"chunks": [": x\n\n"], "done": False},
        {"chunks": [": x\n\n"], "keepalive": True},
        {"chunks": [": x\n\n"], "usage": None},
        {"chunks": [": x\n\n"], "error_after_tokens": 1},
        {"chunks": [": x\n\n"], "malformed_after_tokens": 1},
        {"chunks": [": x\n\n"], "oversize_after_tokens": 1},
        {"chunks": ": x\n\n"},
        {"chunks": [": x\n\n", 3]},
        {"chunks": [[": x\n\n"]]},
        {"chunks": [": x\n\n"], "drop_after_tokens": 1, "stall_after_tokens": 1},
    ],
)
def test_contradictory_or_malformed_chunks_are_refused(
    bad: dict[str, Any], upstream: Upstream
) -> None:
    with pytest.raises(UpstreamError, match="400"):
        upstream.script({"chunks": []}, bad)
    assert upstream.pending() == []


# --- the shapes themselves, against their sources ----------------------------------------------


def test_openai_tool_calls_follow_openai_fragments() -> None:
    chunks = shapes.openai_tool_calls([("get_weather", WEATHER), ("get_time", ["{}"])])
    deltas = [c["choices"][0]["delta"] for c in chunks if isinstance(c, dict)]
    assert deltas[0] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "index": 0,
                "id": "call_0",
                "type": "function",
                "function": {"name": "get_weather", "arguments": ""},
            }
        ],
        "refusal": None,
    }
    calls: dict[int, str] = {}
    for delta in deltas[1:-1]:
        (fragment,) = delta["tool_calls"]
        if "id" not in fragment:
            assert set(fragment) == {"index", "function"}
            assert set(fragment["function"]) == {"arguments"}
        calls[fragment["index"]] = (
            calls.get(fragment["index"], "") + (fragment["function"]["arguments"])
        )
    assert {i: json.loads(a) for i, a in calls.items()} == {
        0: {"city": "Zürich", "unit": "c"},
        1: {},
    }
    finish = [c for c in chunks if isinstance(c, dict)][-1]
    assert finish["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1] == shapes.DONE
    with pytest.raises(ValueError, match="at most one"):
        shapes.openai_tool_calls([("a", ["{}"]), ("b", ["{}"])], parallel=False)


def test_openai_usage_chunk_has_empty_choices_and_others_null_usage() -> None:
    *chunks, usage, done = shapes.openai_text(["a", "b"])
    assert done == shapes.DONE
    assert isinstance(usage, dict) and usage["choices"] == []
    assert usage["usage"]["completion_tokens"] == 2
    assert all(isinstance(c, dict) and c["usage"] is None for c in chunks)


def test_think_in_content_splits_the_tags_where_asked() -> None:
    chunks = shapes.think_in_content("Plan.", "Done.", [4, 11])
    contents = [
        c["choices"][0]["delta"].get("content")
        for c in chunks
        if isinstance(c, dict) and c["choices"]
    ]
    assert contents[1:4] == ["<thi", "nk>\nPla", "n.\n</think>\n\nDone."]
    assert "".join(filter(None, contents)) == shapes.think_text("Plan.", "Done.")


def test_ollama_writes_json_as_go_does() -> None:
    chunks = shapes.ollama_openai(["<think>&"], reasoning=["r"])
    assert all(isinstance(c, str) for c in chunks)
    text = "".join(str(c) for c in chunks)
    assert "\\u003cthink\\u003e\\u0026" in text and "<think>" not in text
    events = [json.loads(c.removeprefix("data: ")) for c in chunks[:-1] if isinstance(c, str)]
    assert events[0]["choices"][0]["delta"] == {
        "role": "assistant",
        "content": "",
        "reasoning": "r",
    }
    assert events[-1]["choices"] == [] and events[-1]["usage"]["completion_tokens"] == 2
    assert events[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1] == shapes.DONE


def test_split_cuts_at_offsets() -> None:
    assert shapes.split('{"a":1}', [3, 0, 99, 3]) == ['{"a', '":1}']
    assert shapes.split("", [1]) == []
