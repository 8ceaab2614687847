"""The OpenAI-compatible backend against a real scripted upstream process.

Everything goes through a real gateway on a loopback port: ask with
``POST /v1/chat``, follow the stream, and check both what the listener saw and
what the upstream recorded (which key, which body, when its client went away).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from conftest import ServerFactory
from helpers import ask, data_of, follow, last, text_of
from upstream.control import Upstream
from upstream.fixtures import Gateway, answer

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

HELLO = "Hello from the test upstream."


async def test_tokens_usage_and_finish_reason_reach_the_stream(
    upstream: Upstream, gateway: Gateway
) -> None:
    upstream.script({"finish_reason": "length"})
    events = await answer(gateway(upstream, system_prompt="Be brief.", temperature=0.3))
    assert text_of(events) == HELLO
    end = last(events, "end")
    assert end["finish_reason"] == "length"
    assert end["usage"]["completion_tokens"] == 5
    body = upstream.requests()[0]["body"]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["model"] == "test-model" and body["temperature"] == 0.3
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
    ]


async def test_request_options_override_defaults_within_bounds(
    upstream: Upstream, gateway: Gateway
) -> None:
    server = gateway(upstream, temperature=0.3, max_tokens_limit=50, temperature_limit=1.0)
    await answer(server, options={"temperature": 0.9, "max_tokens": 50, "top_p": 0.5})
    body = upstream.requests()[0]["body"]
    assert (body["temperature"], body["max_tokens"], body["top_p"]) == (0.9, 50, 0.5)
    async with httpx.AsyncClient(base_url=server.url) as client:
        response = await client.post(
            "/v1/chat", json={"message": "x", "assistant": "up", "options": {"max_tokens": 51}}
        )
        assert response.status_code == 422
        assert response.json()["error"]["fields"][0]["field"] == "options.max_tokens"
        hot = await client.post(
            "/v1/chat", json={"message": "x", "assistant": "up", "options": {"temperature": 1.5}}
        )
        assert hot.status_code == 422
    assert len(upstream.requests()) == 1


async def test_keys_are_used_round_robin(upstream: Upstream, gateway: Gateway) -> None:
    server = gateway(upstream, keys=["k1", "k2"])
    for _ in range(4):
        await answer(server)
    assert [r["key"] for r in upstream.requests()] == ["k1", "k2", "k1", "k2"]


async def test_429_moves_to_the_next_key_and_rests_the_first(
    upstream: Upstream, gateway: Gateway
) -> None:
    server = gateway(upstream, keys=["k1", "k2"])
    upstream.script({"status": 429, "retry_after": 30})
    assert text_of(await answer(server)) == HELLO
    await answer(server)
    assert [r["key"] for r in upstream.requests()] == ["k1", "k2", "k2"]


async def test_a_5xx_before_the_first_token_is_retried_with_backoff(
    upstream: Upstream, gateway: Gateway
) -> None:
    upstream.script({"status": 500}, {"status": 503})
    events = await answer(gateway(upstream))
    assert text_of(events) == HELLO
    log = upstream.requests()
    assert [r["status"] for r in log] == [500, 503, 200]
    assert log[2]["started"] - log[1]["started"] >= 0.05  # a pause, not a hot loop


async def test_a_refused_key_is_benched_and_never_logged(
    upstream: Upstream, gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    upstream.configure(valid_keys=["good-key"])
    server = gateway(upstream, keys=["revoked-key-123", "good-key"])
    with caplog.at_level(logging.WARNING, logger="typewriter"):
        for _ in range(3):
            assert text_of(await answer(server)) == HELLO
    assert [r["key"] for r in upstream.requests()] == [
        "revoked-key-123",
        "good-key",
        "good-key",
        "good-key",
    ]
    assert "benched" in caplog.text and "sha256:" in caplog.text
    assert "revoked-key-123" not in caplog.text


async def test_failover_to_the_next_upstream_when_one_is_down(
    upstream: Upstream, gateway: Gateway
) -> None:
    dead = "http://127.0.0.1:9/v1"  # discard port: connection refused
    events = await answer(gateway(dead, upstream))
    assert text_of(events) == HELLO
    assert len(upstream.requests()) == 1


async def test_failover_when_headers_are_too_slow(
    make_upstream: Callable[[], Upstream], upstream: Upstream, gateway: Gateway
) -> None:
    slow = make_upstream()
    slow.script({"delay_headers_ms": 10_000})
    events = await answer(gateway(slow, upstream, headers_timeout=0.5))
    assert text_of(events) == HELLO
    slow.wait_for_disconnect(0, timeout=5)  # the slow request was closed, not left running


async def test_nothing_answers_within_the_deadline(
    upstream: Upstream, gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    upstream.script(*[{"status": 503}] * 200)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="typewriter"):
        events = await answer(gateway(upstream, retry={"deadline": 1, "backoff_initial": 0.05}))
    assert time.monotonic() - started < 10
    assert [e.event for e in events] == ["start", "error", "end"]
    assert data_of(events[1]) == {
        "code": "upstream_unavailable",
        "message": "The model is not reachable right now.",
    }
    (gave_up,) = [r for r in caplog.records if "no upstream answered" in r.message]
    assert gave_up.levelno == logging.WARNING and "u0: 503" in gave_up.message
    assert last(events, "end")["finish_reason"] == "error"
    assert len(upstream.requests()) > 2


async def test_a_request_the_upstream_rejects_is_not_retried(
    upstream: Upstream, gateway: Gateway
) -> None:
    upstream.script({"status": 400, "error_message": "context too long"})
    events = await answer(gateway(upstream))
    assert data_of(events[1])["code"] == "upstream_error"
    assert "context too long" in data_of(events[1])["message"]
    assert len(upstream.requests()) == 1


@pytest.mark.parametrize(
    ("behaviour", "message_part"),
    [
        ({"drop_after_tokens": 2}, "broke"),
        ({"malformed_after_tokens": 2}, "invalid chunk"),
        ({"error_after_tokens": 2, "error_message": "GPU fell over"}, "GPU fell over"),
    ],
)
async def test_errors_after_the_first_token_keep_the_text(
    upstream: Upstream, gateway: Gateway, behaviour: dict[str, Any], message_part: str
) -> None:
    upstream.script(behaviour)
    server = gateway(upstream)
    events = await answer(server)
    assert text_of(events) == "Hello from "
    error = data_of([e for e in events if e.event == "error"][0])
    assert error["code"] == "upstream_error" and message_part in error["message"]
    assert last(events, "end")["finish_reason"] == "error"
    assert len(upstream.requests()) == 1  # never retried after text was shown
    async with httpx.AsyncClient(base_url=server.url) as client:
        assert (await client.get("/healthz")).status_code == 200


async def test_an_answer_that_is_not_an_event_stream(upstream: Upstream, gateway: Gateway) -> None:
    upstream.script({"status": 200, "body": "<html>oops</html>", "content_type": "text/html"})
    events = await answer(gateway(upstream))
    error = data_of([e for e in events if e.event == "error"][0])
    assert error["code"] == "upstream_error" and "text/html" in error["message"]


async def test_a_stalled_upstream_ends_with_timeout_and_is_closed(
    upstream: Upstream, gateway: Gateway
) -> None:
    upstream.script({"stall_after_tokens": 2})
    events = await answer(gateway(upstream, idle_timeout=0.5))
    assert text_of(events) == "Hello from "
    assert data_of([e for e in events if e.event == "error"][0])["code"] == "upstream_timeout"
    assert last(events, "end")["finish_reason"] == "timeout"
    upstream.wait_for_disconnect(0, timeout=5)


async def test_no_first_token_in_time_ends_with_timeout(
    upstream: Upstream, gateway: Gateway
) -> None:
    upstream.script({"delay_first_token_ms": 10_000})
    events = await answer(gateway(upstream, first_token_timeout=0.5))
    assert [e.event for e in events] == ["start", "error", "end"]
    assert last(events, "end")["finish_reason"] == "timeout"
    upstream.wait_for_disconnect(0, timeout=5)


@pytest.mark.parametrize(
    "behaviour",
    [
        {"delay_headers_ms": 10_000},
        {"delay_first_token_ms": 10_000},
        {"tokens": [f"t{i} " for i in range(1000)], "tokens_per_second": 20},
    ],
    ids=["before-headers", "before-first-token", "mid-stream"],
)
async def test_stop_closes_the_upstream_request(
    upstream: Upstream, gateway: Gateway, behaviour: dict[str, Any]
) -> None:
    upstream.script(behaviour)
    server = gateway(upstream)
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
        started = await ask(client, "hi", assistant="up")
        upstream.wait_for_requests(1)
        if "tokens" in behaviour:
            await follow(client, started["events_url"], limit=4)
        stopped_at = time.time()
        response = await client.post(f"/v1/streams/{started['stream_id']}/cancel")
        assert response.status_code == 202
        record = upstream.wait_for_disconnect(0, timeout=5)
        events = await follow(client, started["events_url"])
    assert last(events, "end")["finish_reason"] == "cancelled"
    assert record["disconnected"] is not None
    assert record["disconnected"] - stopped_at < 2.0
    assert not record["completed"]


async def test_history_reaches_the_upstream(upstream: Upstream, gateway: Gateway) -> None:
    upstream.script({"echo_messages": True})
    events = await answer(gateway(upstream, system_prompt="S"), "question?")
    assert json.loads(text_of(events)) == [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "question?"},
    ]


SLOW = {"tokens": [f"t{i} " for i in range(1000)], "tokens_per_second": 20}


async def test_closing_a_direct_response_closes_the_upstream(
    upstream: Upstream, gateway: Gateway
) -> None:
    upstream.script(SLOW)
    server = gateway(upstream)
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
        body = {"message": "hi", "assistant": "up"}
        headers = {"accept": "text/event-stream"}
        async with client.stream("POST", "/v1/chat", json=body, headers=headers) as direct:
            async for chunk in direct.aiter_bytes():
                if b"event: delta" in chunk:
                    break
        closed_at = time.time()
    record = upstream.wait_for_disconnect(0, timeout=5)
    assert record["disconnected"] - closed_at < 2.0


async def test_grace_expiry_closes_the_upstream(
    upstream: Upstream, make_server: ServerFactory
) -> None:
    upstream.script(SLOW)
    server = make_server(
        grace=0.3,
        upstreams=[{"name": "u", "base_url": upstream.base_url}],
        assistants=[{"name": "up", "model": "test-model"}],
    )
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
        await ask(client, "hi", assistant="up")  # and nobody ever listens
    upstream.wait_for_disconnect(0, timeout=5)


@pytest.mark.parametrize("stream", [False, True], ids=["non-streaming", "streaming"])
async def test_leaving_an_openai_call_closes_the_upstream(
    upstream: Upstream, gateway: Gateway, stream: bool
) -> None:
    upstream.script(SLOW)
    server = gateway(upstream)
    body = {"model": "up", "stream": stream, "messages": [{"role": "user", "content": "hi"}]}
    async with httpx.AsyncClient(base_url=server.url) as client:
        if stream:
            async with client.stream("POST", "/v1/chat/completions", json=body) as response:
                async for chunk in response.aiter_bytes():
                    if b'"content":"t' in chunk:
                        break
        else:
            with pytest.raises(httpx.ReadTimeout):
                await client.post("/v1/chat/completions", json=body, timeout=0.5)
    left_at = time.time()
    record = upstream.wait_for_disconnect(0, timeout=5)
    assert record["disconnected"] - left_at < 2.0


def test_the_openai_sdk_through_an_upstream_backed_assistant(
    upstream: Upstream, gateway: Gateway
) -> None:
    import openai

    server = gateway(upstream)
    sdk = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
    messages: Any = [{"role": "user", "content": "hi"}]
    whole = sdk.chat.completions.create(model="up", messages=messages)
    pieces = sdk.chat.completions.create(
        model="up", messages=messages, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(pieces)
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert whole.choices[0].message.content == streamed == HELLO
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5
    assert [m.id for m in sdk.models.list()] == ["up"]
