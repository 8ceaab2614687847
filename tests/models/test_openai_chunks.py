"""Reading an upstream's event stream: odd but valid chunks pass, garbage is an error, an
event over the cap ends the answer, and however the bytes are cut the answer is the same."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from typewriter.errors import ModelError
from typewriter.models.base import Chunk
from typewriter.models.openai_chunks import read_chunks

pytestmark = pytest.mark.anyio

EVENT_STREAM = {"content-type": "text/event-stream"}


async def arriving(pieces: list[bytes]) -> AsyncIterator[bytes]:
    """A response body that arrives in exactly these pieces."""
    for piece in pieces:
        yield piece


async def read(
    body: bytes, content_type: str = "text/event-stream", cap: int = 4 << 20
) -> list[Chunk]:
    headers = {"content-type": content_type}
    return [chunk async for chunk in read_chunks(headers, arriving([body]), cap)]


async def read_pieces(pieces: list[bytes]) -> list[Chunk]:
    """The chunks of a stream that arrives in exactly these pieces."""
    return [chunk async for chunk in read_chunks(EVENT_STREAM, arriving(pieces), 4 << 20)]


async def test_valid_stream_with_usage_and_unusual_but_legal_chunks() -> None:
    body = (
        b'data: {"choices":[{"delta":{"role":"assistant","content":""}}]}\n\n'
        b'data: {"choices":[{"delta":{"content":"Hel"}}]}\n\n'
        b'data: {"choices":[{"delta":{"content":null}}]}\n\n'
        b'data: {"choices":[]}\n\n'
        b": keep-alive comment\n\n"
        b'data: {"choices":[{"delta":{"content":"lo \\ud83c\\udf89"},'
        b'"finish_reason":"length"}]}\n\n'
        b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}\n\n'
        b"data: [DONE]\n\n"
    )
    chunks = await read(body)
    assert [c.text for c in chunks if c.text] == ["Hel", "lo 🎉"]
    assert chunks[-1].finish_reason == "length"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 2


async def test_blocks_without_data_and_a_bom_are_read_as_the_sse_standard_says() -> None:
    """A block with no ``data`` line dispatches nothing, and a leading BOM is not part of
    the first field name (the httpx-sse reader before gave the first an empty event, which
    failed as an invalid chunk, and the second a field ``\ufeffdata`` it dropped)."""
    body = (
        b"\xef\xbb\xbf"
        b'data: {"choices":[{"delta":{"content":"a"}}]}\n\n'
        b"event: ping\n\nid: 7\n\nretry: 5\n\n"
        b'data: {"choices":[{"delta":{"content":"b"}}]}\n\n'
        b"data: [DONE]\n\n"
    )
    assert [c.text for c in await read(body) if c.text] == ["a", "b"]


async def test_a_lone_surrogate_from_upstream_is_replaced_not_fatal() -> None:
    chunks = await read(
        b'data: {"choices":[{"delta":{"content":"a\\ud800b"}}]}\n\ndata: [DONE]\n\n'
    )
    assert chunks[0].text == "a\ufffdb"


async def test_reasoning_in_either_name_tool_calls_and_logprobs_are_read_apart() -> None:
    body = (
        b'data: {"choices":[{"delta":{"role":"assistant","reasoning_content":"Let me"}}]}\n\n'
        b'data: {"choices":[{"delta":{"reasoning":" think","content":null}}]}\n\n'
        b'data: {"choices":[{"delta":{"reasoning_content":"A","reasoning":"A"}}]}\n\n'
        b'data: {"choices":[{"delta":{"content":"Hi"},"logprobs":{"content":[{"token":"Hi",'
        b'"logprob":-0.1,"bytes":[72,105],"top_logprobs":[]}]}}]}\n\n'
        b'data: {"choices":[{"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function",'
        b'"function":{"name":"get_weather","arguments":""}}]}}]}\n\n'
        b'data: {"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":'
        b'"{\\"ci"}}]}}]}\n\n'
        b'data: {"choices":[{"delta":{"tool_calls":[{"function":{"arguments":"ty\\": 1}"}}]}'
        b',"finish_reason":"tool_calls"}]}\n\n'
        b"data: [DONE]\n\n"
    )
    chunks = await read(body)
    assert "".join(c.reasoning for c in chunks) == "Let me thinkA"  # one name read, not both
    assert [c.text for c in chunks if c.text] == ["Hi"]
    with_text = next(c for c in chunks if c.text)
    assert with_text.logprobs is not None and with_text.logprobs["content"][0]["token"] == "Hi"
    calls = [call for c in chunks for call in c.tool_calls]
    assert [(c.index, c.id, c.function) for c in calls] == [
        (0, "call_1", "get_weather"),
        (0, None, None),
        (0, None, None),  # no index: its place in the list
    ]
    assert "".join(c.arguments for c in calls) == '{"city": 1}'
    assert chunks[-1].finish_reason == "tool_calls"


async def test_a_surrogate_pair_cut_between_two_fragments_is_one_character_again() -> None:
    body = (
        b'data: {"choices":[{"delta":{"tool_calls":[{"index":0,"id":"c","function":'
        b'{"name":"f","arguments":"{\\"e\\": \\"\\ud83d"}}]}}]}\n\n'
        b'data: {"choices":[{"delta":{"content":"x\\ud83c"}}]}\n\n'
        b'data: {"choices":[{"delta":{"tool_calls":[{"index":0,"function":'
        b'{"arguments":"\\ude00\\"}"}}]}}]}\n\n'
        b'data: {"choices":[{"delta":{"content":"\\udf89!"}}]}\n\n'
        b'data: {"choices":[{"delta":{},"finish_reason":"tool_calls"}]}\n\n'
    )
    chunks = await read(body)
    arguments = "".join(call.arguments for c in chunks for call in c.tool_calls)
    assert arguments == '{"e": "\U0001f600"}'
    assert "".join(c.text for c in chunks) == "x\U0001f389!"


@pytest.mark.parametrize(
    "delta",
    [
        b'{"tool_calls": 5}',
        b'{"tool_calls": [{"index": "0"}]}',
        b'{"tool_calls": [{"index": -1}]}',
        b'{"tool_calls": [{"index": 0, "function": {"arguments": 7}}]}',
        b'{"tool_calls": [{"index": 0, "id": 7}]}',
        b'{"reasoning_content": ["a"]}',
    ],
)
async def test_tool_calls_and_reasoning_of_a_wrong_shape_are_the_upstreams_error(
    delta: bytes,
) -> None:
    with pytest.raises(ModelError):
        await read(b'data: {"choices":[{"delta":' + delta + b"}]}\n\ndata: [DONE]\n\n")


@pytest.mark.parametrize(
    "body",
    [
        b'data: {"choices": 5}\n\n',
        b'data: {"choices": ["x"]}\n\n',
        b'data: {"choices": [{"delta": "x"}]}\n\n',
        b"data: [1, 2]\n\n",
        b"data: {nope\n\n",
        b'data: {"error": {"message": "overloaded"}}\n\n',
    ],
)
async def test_garbage_is_an_upstream_error(body: bytes) -> None:
    with pytest.raises(ModelError):
        await read(body)


async def test_not_an_event_stream() -> None:
    with pytest.raises(ModelError, match="application/json"):
        await read(b'{"choices": []}', content_type="application/json")


# --- the event cap ----------------------------------------------------------------------


def one_event(content_chars: int) -> bytes:
    return b'data: {"choices":[{"delta":{"content":"' + b"x" * content_chars + b'"}}]}\n\n'


async def test_an_event_within_the_cap_is_read_one_past_it_ends_the_answer() -> None:
    line = len(one_event(0)) - 2  # the data line the cap is measured on, without "\n\n"
    fits = one_event(4096 - line)
    [chunk, end] = await read(fits + b"data: [DONE]\n\n", cap=4096)
    assert chunk.text == "x" * (4096 - line) and end.finish_reason == "stop"
    with pytest.raises(ModelError, match="4096") as raised:
        await read(one_event(4096 - line + 1), cap=4096)
    assert raised.value.code == "upstream_event_too_large" and raised.value.status == 502


async def test_tokens_in_the_same_read_as_an_oversize_event_are_kept() -> None:
    """The answer's text so far stays: what the upstream finished before the oversize
    event is read even when both arrive in one network read."""
    line = len(one_event(0)) - 2
    pieces = [one_event(3) + one_event(4096 - line + 1)]  # one read: a token, then too much
    kept: list[Chunk] = []
    with pytest.raises(ModelError) as raised:
        async for chunk in read_chunks(EVENT_STREAM, arriving(pieces), 4096):
            kept.append(chunk)
    assert [c.text for c in kept] == ["xxx"] and raised.value.code == "upstream_event_too_large"


async def test_a_line_that_never_ends_stops_the_reading_at_the_cap() -> None:
    served = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal served
        yield b'data: {"choices":[{"delta":{"content":"'
        while True:
            served += 1000
            yield b"x" * 1000

    with pytest.raises(ModelError, match="max_event_chars"):
        [chunk async for chunk in read_chunks(EVENT_STREAM, endless(), 10_000)]
    assert served <= 11_000


# --- any cut of a stream gives the same answer ------------------------------------------

odd_text = st.lists(
    st.one_of(
        st.characters(codec="utf-8"),
        st.sampled_from(["\u2028", "\u2029", "\x85", "\r\n", "\r", "é", "🎉", "\ufeff"]),
    ),
    min_size=1,
).map("".join)


def upstream_stream(tokens: list[str], newline: str, comments: bool) -> bytes:
    """What an OpenAI-compatible server sends, its non-ASCII text as raw UTF-8 (as vLLM)."""
    chunks: list[dict[str, Any]] = [{"choices": [{"delta": {"role": "assistant", "content": ""}}]}]
    chunks += [{"choices": [{"delta": {"content": token}}]} for token in tokens]
    chunks.append({"choices": [{"delta": {}, "finish_reason": "length"}]})
    chunks.append({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": len(tokens)}})
    blank = newline * 2
    keep_alive = f": keep-alive{blank}" if comments else ""
    events = [f"data: {json.dumps(c, ensure_ascii=False)}{blank}{keep_alive}" for c in chunks]
    return "".join([*events, f"data: [DONE]{blank}"]).encode()


def check_answer(chunks: list[Chunk], tokens: list[str]) -> None:
    assert [c.text for c in chunks if c.text] == tokens
    assert chunks[-1].finish_reason == "length"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == len(tokens)


@given(
    tokens=st.lists(odd_text, min_size=1, max_size=6),
    newline=st.sampled_from(["\n", "\r\n", "\r"]),
    comments=st.booleans(),
    data=st.data(),
)
async def test_any_cut_of_a_stream_gives_the_same_answer(
    tokens: list[str], newline: str, comments: bool, data: st.DataObject
) -> None:
    wire = upstream_stream(tokens, newline, comments)
    points = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=12)))
    pieces = [wire[a:b] for a, b in zip([0, *points], [*points, len(wire)], strict=True)]
    check_answer(await read_pieces(pieces), tokens)


async def test_byte_by_byte() -> None:
    tokens = ["a\u2028b", "\r\n", "é🎉", "\x85\u2029"]
    wire = upstream_stream(tokens, "\r\n", comments=True)
    check_answer(await read_pieces([wire[i : i + 1] for i in range(len(wire))]), tokens)


async def test_a_compressed_stream_is_an_error_not_garbage() -> None:
    """Identity is asked for and bodies are read as sent: a stream compressed anyway
    is named as such rather than parsed as if it were text."""
    headers = {**EVENT_STREAM, "content-encoding": "gzip"}
    with pytest.raises(ModelError, match="compressed"):
        [chunk async for chunk in read_chunks(headers, arriving([b"\x1f\x8b"]), 4096)]
