"""Reading an upstream's event stream: odd but valid chunks pass, garbage is an error."""

from __future__ import annotations

import httpx
import pytest

from typewriter.errors import ModelError
from typewriter.models.base import Chunk
from typewriter.models.openai import _read_chunks

pytestmark = pytest.mark.anyio


async def read(body: bytes, content_type: str = "text/event-stream") -> list[Chunk]:
    response = httpx.Response(200, headers={"content-type": content_type}, content=body)
    return [chunk async for chunk in _read_chunks(response)]


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


async def test_a_lone_surrogate_from_upstream_is_replaced_not_fatal() -> None:
    chunks = await read(
        b'data: {"choices":[{"delta":{"content":"a\\ud800b"}}]}\n\ndata: [DONE]\n\n'
    )
    assert chunks[0].text.encode("utf-8") == b"a?b"


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
