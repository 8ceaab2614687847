"""Usage on every ending: an answer ended early still says what it cost, in its ``end``, in the
store, in ``GET /v1/usage`` and on ``/v1/chat/completions``.

Exact where the model counted (the last running count of an upstream asked for
``continuous_usage_stats``), else the gateway's documented estimate, marked
``"estimated": true``. Real gateways, the scripted upstream process, the official SDK.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import openai
import pytest

from conftest import RunningServer, ServerFactory, read_events
from helpers import ask, follow, last, text_of
from upstream.control import Upstream
from upstream.fixtures import Gateway

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

SLOW = {"simulate": {"tokens_per_second": 20}}


async def _stored(client: httpx.AsyncClient, conversation_id: str) -> dict[str, Any]:
    for _ in range(100):  # the answer's end is stored before its ``end`` event: at once
        conversation = await client.get(f"/v1/conversations/{conversation_id}")
        message: dict[str, Any] = conversation.json()["messages"][-1]
        if message["status"] != "streaming":
            return message
        await asyncio.sleep(0.05)
    raise AssertionError("the answer was never stored as ended")


async def _stop_after(client: httpx.AsyncClient, started: dict[str, Any], deltas: int) -> list[Any]:
    """Read ``deltas`` deltas of the answer, press Stop, read to its end."""
    async with client.stream("GET", started["events_url"]) as response:
        events = await read_events(response, limit=1 + deltas)
        stop = await client.post(f"/v1/streams/{started['stream_id']}/cancel")
        assert stop.status_code == 202
        async with asyncio.timeout(30):
            events += await read_events(response)
    return events


async def test_a_stopped_answer_has_estimated_usage_stored_and_counted(
    make_server: ServerFactory,
) -> None:
    server = make_server()
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        started = await ask(client, "what are server-sent events?", options=SLOW)
        events = await _stop_after(client, started, 3)
        end = last(events, "end")
        assert end["finish_reason"] == "cancelled"
        usage = end["usage"]
        assert usage["estimated"] is True
        assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
        stored = await _stored(client, started["conversation_id"])
        assert stored["finish_reason"] == "cancelled" and stored["text"] == text_of(events)
        assert stored["usage"] == usage
        total = (await client.get("/v1/usage")).json()["total"]
    assert (total["answers"], total["estimated"], total["without_usage"]) == (1, 1, 0)
    assert total["completion_tokens"] == usage["completion_tokens"]


async def test_a_failed_answer_has_estimated_usage(make_server: ServerFactory) -> None:
    server = make_server()
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        options = {"simulate": {"fail_after_tokens": 3}}
        started = await ask(client, "echo this text back", assistant="echo", options=options)
        events = await follow(client, started["events_url"])
        end = last(events, "end")
        assert end["finish_reason"] == "error" and text_of(events) == "echo this te"
        assert end["usage"]["estimated"] is True and end["usage"]["completion_tokens"] > 0
        stored = await _stored(client, started["conversation_id"])
        assert stored["usage"] == end["usage"]


async def test_a_stopped_answer_has_the_upstreams_running_count(
    upstream: Upstream, gateway: Gateway
) -> None:
    """With ``continuous_usage``, the last count the upstream sent is the exact usage."""
    upstream.script({"tokens": ["a ", "b ", "c ", "d "], "stall_after_tokens": 3})
    server = gateway(upstream, upstream_settings={"continuous_usage": True})
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        started = await ask(client, "one two three", assistant="up")
        events = await _stop_after(client, started, 3)
        end = last(events, "end")
        stored = await _stored(client, started["conversation_id"])
    assert end["finish_reason"] == "cancelled" and text_of(events) == "a b c "
    exact = {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}
    assert end["usage"] == exact and stored["usage"] == exact  # no "estimated"
    sent = upstream.requests()[0]["body"]["stream_options"]
    assert sent == {"include_usage": True, "continuous_usage_stats": True}


async def test_a_timed_out_answer_without_running_count_is_estimated(
    upstream: Upstream, gateway: Gateway
) -> None:
    upstream.script({"tokens": ["a ", "b ", "c ", "d "], "stall_after_tokens": 2})
    server = gateway(upstream, idle_timeout=0.5)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        started = await ask(client, "one two three", assistant="up")
        events = await follow(client, started["events_url"])
        stored = await _stored(client, started["conversation_id"])
    end = last(events, "end")
    assert end["finish_reason"] == "timeout" and text_of(events) == "a b "
    assert end["usage"]["estimated"] is True and end["usage"]["completion_tokens"] == 2
    assert stored["usage"] == end["usage"]
    assert "continuous_usage_stats" not in upstream.requests()[0]["body"]["stream_options"]


def _sdk(server: RunningServer) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


async def test_an_answer_cut_at_length_has_usage_for_an_openai_client(
    make_server: ServerFactory,
) -> None:
    server = make_server(max_answer_chars=10)
    messages: Any = [{"role": "user", "content": "echo a question longer than ten characters"}]
    async with _sdk(server) as sdk:
        stream = await sdk.chat.completions.create(
            model="echo", messages=messages, stream=True, stream_options={"include_usage": True}
        )
        chunks = [chunk async for chunk in stream]
        whole = await sdk.chat.completions.create(model="echo", messages=messages)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    usage = chunks[-1].usage
    assert usage is not None and not chunks[-1].choices
    assert usage.completion_tokens > 0 and usage.prompt_tokens > 0
    assert (usage.model_extra or {}).get("estimated") is True
    assert whole.choices[0].finish_reason == "length"
    assert whole.usage is not None and whole.usage.completion_tokens == usage.completion_tokens


async def test_a_failed_streamed_completion_still_sends_its_usage_before_the_error(
    upstream: Upstream, gateway: Gateway
) -> None:
    upstream.script({"tokens": ["a ", "b ", "c "], "error_after_tokens": 2})
    server = gateway(upstream)
    body = {
        "model": "up",
        "messages": [{"role": "user", "content": "one two"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        response = await client.post("/v1/chat/completions", json=body)
    blocks = [b.removeprefix("data: ") for b in response.text.split("\n\n") if b]
    assert blocks[-1] == "[DONE]"
    usage_chunk, error = json.loads(blocks[-3]), json.loads(blocks[-2])
    assert error["error"]["code"] == "upstream_error"
    assert usage_chunk["choices"] == [] and usage_chunk["usage"]["completion_tokens"] == 2
    assert usage_chunk["usage"]["estimated"] is True


async def test_a_completion_stopped_midway_gives_an_openai_client_its_usage(
    upstream: Upstream, gateway: Gateway
) -> None:
    upstream.script({"tokens": [f"w{i} " for i in range(200)], "tokens_per_second": 20})
    server = gateway(upstream)
    messages: Any = [{"role": "user", "content": "count slowly"}]
    async with _sdk(server) as sdk, httpx.AsyncClient(base_url=server.url) as client:
        raw = await sdk.chat.completions.with_raw_response.create(
            model="up", messages=messages, stream=True, stream_options={"include_usage": True}
        )
        stream_id = raw.headers["x-stream-id"]
        chunks = []
        async for chunk in raw.parse():
            chunks.append(chunk)
            texts = [c for c in chunks if c.choices and c.choices[0].delta.content]
            if len(texts) == 3:  # Stop pressed elsewhere (the page, another client)
                stop = await client.post(f"/v1/streams/{stream_id}/cancel")
                assert stop.status_code == 202
    finish = [c.choices[0].finish_reason for c in chunks if c.choices][-1]
    assert finish == "stop"  # OpenAI's clients know no "cancelled": the partial answer is it
    usage = chunks[-1].usage
    assert usage is not None and not chunks[-1].choices
    assert usage.completion_tokens >= 3 and usage.prompt_tokens > 0
    assert (usage.model_extra or {}).get("estimated") is True
