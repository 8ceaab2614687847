"""How an upstream's stream ends decides how the answer ends, on both APIs and in the store.

A real gateway in front of the scripted upstream process: the upstream's finish reasons are
read into the contract's list (``tool_calls`` and ``content_filter`` kept, anything unknown
``stop``), and a stream that closes with neither a finish reason nor ``[DONE]`` is an error
(``upstream_incomplete``) with its text kept, never an answer that looks complete. The
completions route is read with the official ``openai`` SDK, as its users would.
"""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from conftest import RunningServer
from helpers import ask, data_of, follow, last, text_of
from upstream.control import Upstream
from upstream.fixtures import Gateway

pytestmark = pytest.mark.integration

HELLO = "Hello from the test upstream."
CUT = {"finish_reason": None, "done": False, "usage": None}
"""A stream closed properly after its deltas, with neither a finish reason nor [DONE]."""


async def _ask(server: RunningServer) -> tuple[list[Any], dict[str, Any]]:
    """The events of one ``/v1/chat`` answer, and the answer as stored."""
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        started = await ask(client, "hi", assistant="up")
        events = await follow(client, started["events_url"])
        conversation = await client.get(f"/v1/conversations/{started['conversation_id']}")
        stored: dict[str, Any] = conversation.json()["messages"][-1]
    return events, stored


def _sdk(server: RunningServer) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


MESSAGES: Any = [{"role": "user", "content": "hi"}]


@pytest.mark.anyio
@pytest.mark.parametrize("reason", ["tool_calls", "content_filter"])
async def test_kept_finish_reasons_reach_both_apis_and_the_store(
    upstream: Upstream, gateway: Gateway, reason: str
) -> None:
    upstream.script(*[{"finish_reason": reason}] * 3)
    server = gateway(upstream)
    events, stored = await _ask(server)
    assert text_of(events) == HELLO and not [e for e in events if e.event == "error"]
    assert last(events, "end")["finish_reason"] == reason
    assert (stored["text"], stored["finish_reason"], stored["status"]) == (HELLO, reason, "done")
    async with _sdk(server) as sdk:
        whole = await sdk.chat.completions.create(model="up", messages=MESSAGES)
        assert whole.choices[0].finish_reason == reason
        assert whole.choices[0].message.content == HELLO
        stream = await sdk.chat.completions.create(model="up", messages=MESSAGES, stream=True)
        chunks = [chunk async for chunk in stream]
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == reason
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == HELLO


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("upstream_reason", "reason"),
    [("function_call", "tool_calls"), ("model_length", "length"), ("eos_token", "stop")],
)
async def test_other_finish_reasons_are_read_into_the_contracts_list(
    upstream: Upstream, gateway: Gateway, upstream_reason: str, reason: str
) -> None:
    upstream.script({"finish_reason": upstream_reason})
    events, stored = await _ask(gateway(upstream))
    assert text_of(events) == HELLO and not [e for e in events if e.event == "error"]
    assert last(events, "end")["finish_reason"] == reason
    assert (stored["text"], stored["finish_reason"], stored["status"]) == (HELLO, reason, "done")


@pytest.mark.anyio
async def test_an_upstream_that_ends_with_finish_reason_error_fails_the_answer(
    upstream: Upstream, gateway: Gateway
) -> None:
    upstream.script({"finish_reason": "error"})
    events, stored = await _ask(gateway(upstream))
    assert data_of([e for e in events if e.event == "error"][0])["code"] == "upstream_error"
    assert last(events, "end")["finish_reason"] == "error"
    assert (stored["text"], stored["finish_reason"]) == (HELLO, "error")


@pytest.mark.anyio
async def test_a_stream_without_finish_reason_or_done_ends_upstream_incomplete(
    upstream: Upstream, gateway: Gateway
) -> None:
    # Keep-alive comments along the way change nothing.
    upstream.script({**CUT, "keepalive": True})
    server = gateway(upstream)
    events, stored = await _ask(server)
    assert text_of(events) == HELLO  # everything the upstream sent is shown
    error = data_of([e for e in events if e.event == "error"][0])
    assert error["code"] == "upstream_incomplete"
    assert last(events, "end")["finish_reason"] == "error"
    assert (stored["text"], stored["finish_reason"], stored["status"]) == (HELLO, "error", "done")
    assert len(upstream.requests()) == 1  # text was shown: never retried

    # Either sign of a finished stream is enough: a finish reason without [DONE] (some
    # servers end so; or the connection breaks after it), or [DONE] without a finish reason.
    upstream.script({"done": False, "keepalive": True}, {"done": "drop"}, {"finish_reason": None})
    for _ in range(3):
        events, stored = await _ask(server)
        assert [e.event for e in events if e.event == "error"] == []
        assert last(events, "end")["finish_reason"] == "stop"
        assert (stored["text"], stored["finish_reason"]) == (HELLO, "stop")


@pytest.mark.anyio
async def test_an_incomplete_stream_is_an_error_to_an_openai_client(
    upstream: Upstream, gateway: Gateway
) -> None:
    upstream.script(CUT, CUT)
    text: list[str] = []
    async with _sdk(gateway(upstream)) as sdk:
        with pytest.raises(openai.InternalServerError) as whole:
            await sdk.chat.completions.create(model="up", messages=MESSAGES)
        stream = await sdk.chat.completions.create(model="up", messages=MESSAGES, stream=True)
        with pytest.raises(openai.APIError) as streamed:
            async with stream:
                async for chunk in stream:
                    text.extend(c.delta.content or "" for c in chunk.choices)
    assert whole.value.status_code == 502
    assert (whole.value.code, whole.value.type) == ("upstream_incomplete", "server_error")
    assert "".join(text) == HELLO  # the text so far came before the error
    body = streamed.value.body
    assert isinstance(body, dict) and body.get("code") == "upstream_incomplete"
