"""Tests of the scriptable upstream itself, seen from a plain httpx client.

Gateway tests will conclude "the gateway did X when the upstream did Y"; that is only worth
something if the upstream really does Y, on the wire, and its log really says what happened.
So every behaviour is observed here from an ordinary HTTP client, with timings measured on the
client side as well as read from the log.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from httpx_sse import connect_sse

from upstream.control import Upstream, UpstreamError

pytest_plugins = ["upstream.fixtures"]
pytestmark = pytest.mark.integration

REPLY_TOKENS = ["Hello ", "from ", "the ", "test ", "upstream."]
CHUNK_KEYS = {"id", "object", "created", "model", "choices"}


def chat(stream: bool = True, usage: bool = True, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "test-model",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Say hello to everyone"},
        ],
        "stream": stream,
        "temperature": 0.5,
        **extra,
    }
    if stream and usage:
        body["stream_options"] = {"include_usage": True}
    return body


@pytest.fixture
def client(upstream: Upstream) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=upstream.base_url, timeout=5.0, trust_env=False) as http:
        yield http


def sse_data(client: httpx.Client, body: dict[str, Any], **kwargs: Any) -> list[str]:
    """The ``data`` of every event of a streamed chat completion."""
    with connect_sse(client, "POST", "/chat/completions", json=body, **kwargs) as source:
        assert source.response.status_code == 200
        return [event.data for event in source.iter_sse()]


def contents(data: list[str]) -> list[str]:
    """The content deltas, skipping [DONE], the usage chunk and anything not JSON."""
    found: list[str] = []
    for item in data:
        try:
            chunk = json.loads(item)
        except ValueError:
            continue
        for choice in chunk.get("choices", []) if isinstance(chunk, dict) else []:
            content = choice["delta"].get("content")
            if content:
                found.append(content)
    return found


def reply_text(data: list[str]) -> str:
    return "".join(contents(data))


# --- the happy paths -----------------------------------------------------------------------


def test_models_lists_the_configured_models(upstream: Upstream, client: httpx.Client) -> None:
    assert client.get("/models").json() == {
        "object": "list",
        "data": [{"id": "test-model", "object": "model", "created": 0, "owned_by": "test"}],
    }
    upstream.configure(models=["a", "b"])
    assert [m["id"] for m in client.get("/models").json()["data"]] == ["a", "b"]


def test_stream_has_openai_shape_usage_and_done(upstream: Upstream, client: httpx.Client) -> None:
    data = sse_data(client, chat())
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    first, *deltas, finish, usage = chunks
    for chunk in chunks:
        assert set(chunk) == CHUNK_KEYS | {"usage"}
        assert chunk["object"] == "chat.completion.chunk"
        assert chunk["id"] == first["id"] and chunk["id"].startswith("chatcmpl-")
        assert chunk["model"] == "test-model"
        assert isinstance(chunk["created"], int)
    assert first["choices"] == [
        {
            "index": 0,
            "delta": {"role": "assistant", "content": ""},
            "finish_reason": None,
            "logprobs": None,
        }
    ]
    assert [c["choices"][0]["delta"] for c in deltas] == [{"content": t} for t in REPLY_TOKENS]
    assert all(c["choices"][0]["finish_reason"] is None for c in deltas)
    assert all(c["usage"] is None for c in [first, *deltas, finish])
    assert finish["choices"] == [
        {"index": 0, "delta": {}, "finish_reason": "stop", "logprobs": None}
    ]
    assert usage["choices"] == []
    # prompt: words of the system and user messages (2 + 4); completion: deltas sent.
    assert usage["usage"] == {"prompt_tokens": 6, "completion_tokens": 5, "total_tokens": 11}

    (record,) = upstream.requests()
    assert record["index"] == 0
    assert record["path"] == "/v1/chat/completions"
    assert record["model"] == "test-model"
    assert record["body"] == chat()
    assert record["stream"] is True
    assert record["tokens_sent"] == 5
    assert record["completed"] is True
    assert record["status"] == 200
    assert record["started"] <= record["headers_sent"] <= record["first_token_sent"]
    assert record["disconnected"] is None and record["dropped"] is None
    assert record["behaviour"] is None


def test_stream_without_include_usage_has_no_usage(client: httpx.Client) -> None:
    data = sse_data(client, chat(usage=False))
    chunks = [json.loads(d) for d in data[:-1]]
    assert all(set(chunk) == CHUNK_KEYS for chunk in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert reply_text(data) == "Hello from the test upstream."


def test_non_streaming_completion_shape(upstream: Upstream, client: httpx.Client) -> None:
    response = client.post("/chat/completions", json=chat(stream=False))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    payload = response.json()
    assert set(payload) == {"id", "object", "created", "model", "choices", "usage"}
    assert payload["object"] == "chat.completion"
    assert payload["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello from the test upstream."},
            "finish_reason": "stop",
            "logprobs": None,
        }
    ]
    assert payload["usage"] == {"prompt_tokens": 6, "completion_tokens": 5, "total_tokens": 11}
    (record,) = upstream.requests()
    assert record["stream"] is False and record["completed"] is True
    assert record["tokens_sent"] == 5


def test_script_is_fifo_then_default(upstream: Upstream, client: httpx.Client) -> None:
    upstream.script({"status": 500}, {"tokens": ["a", "b"], "finish_reason": "length"})
    assert len(upstream.pending()) == 2
    assert client.post("/chat/completions", json=chat()).status_code == 500
    data = sse_data(client, chat())
    assert reply_text(data) == "ab"
    assert json.loads(data[-3])["choices"][0]["finish_reason"] == "length"
    assert reply_text(sse_data(client, chat())) == "Hello from the test upstream."
    assert upstream.pending() == []
    log = upstream.requests()
    assert [r["index"] for r in log] == [0, 1, 2]
    assert [r["behaviour"] for r in log] == [
        {"status": 500},
        {"tokens": ["a", "b"], "finish_reason": "length"},
        None,
    ]


def test_bad_behaviours_are_refused_and_nothing_is_queued(upstream: Upstream) -> None:
    for bad in (
        {"stauts": 500},
        {"drop_after_tokens": 1, "stall_after_tokens": 2},
        {"echo": True, "tokens": ["x"]},
        {"delay_headers_ms": -1},
        {"tokens": "not a list"},
        {"oversize_after_tokens": 1, "error_after_tokens": 1},
        {"oversize_bytes": 1.5},
        {"write_bytes": 0},
        {"raw_utf8": "yes"},
    ):
        with pytest.raises(UpstreamError, match="400"):
            upstream.script({"status": 429}, bad)
    assert upstream.pending() == []


def test_reset_clears_queue_log_and_config(upstream: Upstream, client: httpx.Client) -> None:
    upstream.configure(valid_keys=["k"], models=["other"], strict_models=True)
    upstream.script({"status": 500})
    client.post("/chat/completions", json=chat())
    upstream.reset()
    assert upstream.requests() == [] and upstream.pending() == []
    assert client.post("/chat/completions", json=chat(stream=False)).status_code == 200
    assert upstream.requests()[0]["index"] == 0


def test_usage_override_merges_and_none_removes_it(
    client: httpx.Client, upstream: Upstream
) -> None:
    upstream.script({"usage": {"prompt_tokens": 100}}, {"usage": None}, {"usage": None})
    usage = json.loads(sse_data(client, chat())[-2])["usage"]
    assert usage == {"prompt_tokens": 100, "completion_tokens": 5, "total_tokens": 11}
    data = sse_data(client, chat())
    assert all("usage" not in json.loads(d) for d in data[:-1])
    assert "usage" not in client.post("/chat/completions", json=chat(stream=False)).json()


def test_echo_answers_the_last_user_message_in_four_char_pieces(
    upstream: Upstream, client: httpx.Client
) -> None:
    upstream.script({"echo": True})
    body = chat()
    body["messages"] += [
        {"role": "assistant", "content": "earlier answer"},
        {"role": "user", "content": [{"type": "text", "text": "the last question"}]},
    ]
    assert contents(sse_data(client, body)) == ["the ", "last", " que", "stio", "n"]


def test_echo_messages_shows_exactly_what_was_sent(
    upstream: Upstream, client: httpx.Client
) -> None:
    upstream.script({"echo_messages": True}, {"echo_messages": True})
    body = chat()
    assert json.loads(reply_text(sse_data(client, body))) == body["messages"]
    answer = client.post("/chat/completions", json=chat(stream=False)).json()
    assert json.loads(answer["choices"][0]["message"]["content"]) == body["messages"]


def test_extra_headers_and_content_type(upstream: Upstream, client: httpx.Client) -> None:
    upstream.script({"headers": {"X-Upstream": "yes"}}, {"status": 200, "body": "<html>",
                                                         "content_type": "text/html"})  # fmt: skip
    with client.stream("POST", "/chat/completions", json=chat()) as response:
        assert response.headers["x-upstream"] == "yes"
        assert response.headers["content-type"].startswith("text/event-stream")
        response.read()
    response = client.post("/chat/completions", json=chat())
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html"
    assert response.text == "<html>"


# --- errors and keys -----------------------------------------------------------------------


def test_429_with_retry_after(upstream: Upstream, client: httpx.Client) -> None:
    upstream.script({"status": 429, "retry_after": 7})
    response = client.post("/chat/completions", json=chat())
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    assert response.json() == {
        "error": {
            "message": "Rate limit reached for requests",
            "type": "requests",
            "param": None,
            "code": "rate_limit_exceeded",
        }
    }
    (record,) = upstream.requests()
    assert record["status"] == 429 and record["completed"] is True


def test_500_and_custom_error_bodies(upstream: Upstream, client: httpx.Client) -> None:
    upstream.script(
        {"status": 500},
        {"status": 503, "error_message": "busy"},
        {"status": 400, "body": {"detail": "custom"}},
    )
    first = client.post("/chat/completions", json=chat())
    assert first.status_code == 500
    assert first.json()["error"]["type"] == "server_error"
    assert "retry-after" not in first.headers
    second = client.post("/chat/completions", json=chat())
    assert (second.status_code, second.json()["error"]["message"]) == (503, "busy")
    third = client.post("/chat/completions", json=chat())
    assert (third.status_code, third.json()) == (400, {"detail": "custom"})


def test_valid_keys_refuse_other_keys_without_consuming_behaviours(
    upstream: Upstream, client: httpx.Client
) -> None:
    upstream.configure(valid_keys=["good"])
    upstream.script({"tokens": ["ok"]})
    refused = client.post("/chat/completions", json=chat(), headers={"Authorization": "Bearer bad"})
    assert refused.status_code == 401
    assert refused.json() == {
        "error": {
            "message": "Incorrect API key provided",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_api_key",
        }
    }
    assert client.post("/chat/completions", json=chat()).status_code == 401  # no key at all
    assert client.get("/models", headers={"Authorization": "Bearer bad"}).status_code == 401
    data = sse_data(client, chat(), headers={"Authorization": "Bearer good"})
    assert reply_text(data) == "ok"
    log = upstream.requests()
    assert [(r["key"], r["status"], r["behaviour"]) for r in log] == [
        ("bad", 401, None),
        (None, 401, None),
        ("good", 200, {"tokens": ["ok"]}),
    ]
    assert log[2]["headers"]["authorization"] == "Bearer good"


def test_strict_models_gives_404_for_unknown_models(
    upstream: Upstream, client: httpx.Client
) -> None:
    upstream.configure(strict_models=True)
    response = client.post("/chat/completions", json=chat(model="nope"))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "model_not_found"
    assert client.post("/chat/completions", json=chat(stream=False)).status_code == 200


def test_body_that_is_not_json_gets_400(upstream: Upstream, client: httpx.Client) -> None:
    response = client.post("/chat/completions", content=b"{oops")
    assert response.status_code == 400
    assert upstream.requests()[0]["body"] is None


# --- timing --------------------------------------------------------------------------------


def test_delay_headers_ms_holds_the_headers_back(upstream: Upstream, client: httpx.Client) -> None:
    upstream.script({"delay_headers_ms": 300})
    sent = time.monotonic()
    with client.stream("POST", "/chat/completions", json=chat()) as response:
        waited = time.monotonic() - sent
        response.read()
    assert 0.3 <= waited < 1.5
    (record,) = upstream.requests()
    assert record["headers_sent"] - record["started"] >= 0.3


def test_delay_first_token_ms_sends_headers_then_nothing(
    upstream: Upstream, client: httpx.Client
) -> None:
    upstream.script({"delay_first_token_ms": 300})
    sent = time.monotonic()
    with connect_sse(client, "POST", "/chat/completions", json=chat()) as source:
        headers_after = time.monotonic() - sent
        events = source.iter_sse()
        first = next(events)
        first_after = time.monotonic() - sent
        assert json.loads(first.data)["choices"][0]["delta"]["role"] == "assistant"
        list(events)
    assert headers_after < 0.25
    assert first_after >= 0.3
    (record,) = upstream.requests()
    assert record["first_token_sent"] - record["headers_sent"] >= 0.3


def test_tokens_per_second_paces_the_deltas(upstream: Upstream, client: httpx.Client) -> None:
    upstream.script({"tokens": ["x"] * 11, "tokens_per_second": 50})
    sent = time.monotonic()
    assert reply_text(sse_data(client, chat())) == "x" * 11
    assert time.monotonic() - sent >= 0.2  # 10 gaps of 20 ms


def test_raw_utf8_sends_text_unescaped(upstream: Upstream, client: httpx.Client) -> None:
    odd = ["a\u2028b", "c\u2029d", "e\x85f", "\U0001f389"]
    upstream.script({"tokens": odd, "raw_utf8": True}, {"tokens": odd})
    raw = client.post("/chat/completions", json=chat()).content
    assert all(token.encode() in raw for token in odd)
    assert b"\\u" not in raw
    escaped = client.post("/chat/completions", json=chat()).content
    assert escaped.isascii() and b"\\u2028" in escaped


def test_write_bytes_cuts_the_body_into_small_writes(
    upstream: Upstream, client: httpx.Client
) -> None:
    upstream.script({"write_bytes": 3, "raw_utf8": True, "tokens": ["\u00e9t\u00e9 ", "\u2028"]})
    with client.stream("POST", "/chat/completions", json=chat()) as response:
        pieces = list(response.iter_raw())  # one per HTTP chunk: h11 never merges two
    assert max(len(piece) for piece in pieces) <= 3
    data = [line.removeprefix(b"data: ") for line in b"".join(pieces).split(b"\n\n") if line]
    assert data[-1] == b"[DONE]"
    assert reply_text([d.decode() for d in data]) == "\u00e9t\u00e9 \u2028"
    assert upstream.requests()[0]["completed"] is True


def test_oversize_sends_one_huge_delta_then_goes_on(
    upstream: Upstream, client: httpx.Client
) -> None:
    upstream.script(
        {"oversize_after_tokens": 2, "oversize_bytes": 300_000},
        {"oversize_after_tokens": 0, "oversize_bytes": 70_000},
    )
    data = sse_data(client, chat())
    assert contents(data) == ["Hello ", "from ", "x" * 300_000, "the ", "test ", "upstream."]
    assert data[-1] == "[DONE]"
    whole = client.post("/chat/completions", json=chat(stream=False))
    assert whole.json()["choices"][0]["message"]["content"] == "x" * 70_000


# --- broken streams ------------------------------------------------------------------------


def test_drop_after_tokens_breaks_the_connection(upstream: Upstream, client: httpx.Client) -> None:
    upstream.script({"drop_after_tokens": 2})
    seen: list[str] = []
    with pytest.raises(httpx.RemoteProtocolError):
        with connect_sse(client, "POST", "/chat/completions", json=chat()) as source:
            for event in source.iter_sse():
                seen.append(event.data)
    assert reply_text(seen) == "Hello from "  # everything sent before the drop arrives
    (record,) = upstream.requests()
    assert record["tokens_sent"] == 2
    assert record["completed"] is False
    assert record["dropped"] is not None and record["disconnected"] is None


def test_drop_with_reset_is_a_transport_error(upstream: Upstream, client: httpx.Client) -> None:
    upstream.script({"drop_after_tokens": 1, "drop_mode": "rst"})
    with pytest.raises(httpx.TransportError):
        sse_data(client, chat())
    assert upstream.requests()[0]["dropped"] is not None


def test_drop_non_streaming_sends_no_response(upstream: Upstream, client: httpx.Client) -> None:
    upstream.script({"drop_after_tokens": 0})
    with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
        client.post("/chat/completions", json=chat(stream=False))
    (record,) = upstream.requests()
    assert record["headers_sent"] is None and record["completed"] is False


def test_stall_then_client_times_out_and_the_log_shows_it(
    upstream: Upstream, client: httpx.Client
) -> None:
    upstream.script({"stall_after_tokens": 2})
    seen: list[str] = []
    with pytest.raises(httpx.ReadTimeout):
        with connect_sse(
            client, "POST", "/chat/completions", json=chat(), timeout=httpx.Timeout(5, read=0.3)
        ) as source:
            for event in source.iter_sse():
                seen.append(event.data)
    gave_up = time.time()
    assert reply_text(seen) == "Hello from "
    record = upstream.wait_for_disconnect(0, timeout=2.0)
    assert record["disconnected"] - gave_up < 1.0
    assert record["tokens_sent"] == 2 and record["completed"] is False


def test_malformed_chunk_is_sent_and_the_stream_goes_on(
    upstream: Upstream, client: httpx.Client
) -> None:
    upstream.script({"malformed_after_tokens": 1}, {"malformed_after_tokens": 0})
    with client.stream("POST", "/chat/completions", json=chat()) as response:
        lines = [line for line in response.iter_lines() if line]
    assert lines[2] == "data: {not json"
    assert lines[-1] == "data: [DONE]"
    data = [line.removeprefix("data: ") for line in lines]
    assert reply_text(data[:2] + data[3:]) == "Hello from the test upstream."
    answer = client.post("/chat/completions", json=chat(stream=False))
    assert (answer.status_code, answer.text) == (200, "{not json")


def test_error_after_tokens_sends_an_error_payload(
    upstream: Upstream, client: httpx.Client
) -> None:
    upstream.script(
        {"error_after_tokens": 3, "error_message": "out of memory"},
        {"error_after_tokens": 0, "error_done": True},
        {"error_after_tokens": 0},
    )
    data = sse_data(client, chat())
    assert reply_text(data) == "Hello from the "
    assert json.loads(data[-1]) == {
        "error": {"message": "out of memory", "type": "server_error", "param": None, "code": None}
    }
    assert upstream.requests()[0]["completed"] is True
    data = sse_data(client, chat())
    assert len(data) == 2 and "error" in json.loads(data[0]) and data[1] == "[DONE]"
    answer = client.post("/chat/completions", json=chat(stream=False))
    assert answer.status_code == 500 and answer.json()["error"]["type"] == "server_error"


# --- the client going away, in every phase -------------------------------------------------


def test_completed_requests_are_never_marked_disconnected(
    upstream: Upstream, client: httpx.Client
) -> None:
    upstream.script({"status": 429})
    client.post("/chat/completions", json=chat())
    sse_data(client, chat())
    client.post("/chat/completions", json=chat(stream=False))
    client.close()  # the keep-alive connection goes away after the responses ended
    time.sleep(0.2)
    log = upstream.requests()
    assert [r["completed"] for r in log] == [True, True, True]
    assert [r["disconnected"] for r in log] == [None, None, None]


@pytest.mark.anyio
async def test_disconnect_while_waiting_for_headers(upstream: Upstream) -> None:
    upstream.script({"delay_headers_ms": 10_000})
    async with httpx.AsyncClient(base_url=upstream.base_url, trust_env=False) as client:
        task = asyncio.create_task(client.post("/chat/completions", json=chat()))
        await anyio.to_thread.run_sync(upstream.wait_for_requests, 1)
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        left = time.time()
        record = await anyio.to_thread.run_sync(upstream.wait_for_disconnect, 0, 2.0)
    assert record["disconnected"] - left < 1.0
    assert record["headers_sent"] is None and record["completed"] is False


def test_disconnect_while_waiting_for_the_first_token(
    upstream: Upstream, client: httpx.Client
) -> None:
    upstream.script({"delay_first_token_ms": 10_000})
    with client.stream("POST", "/chat/completions", json=chat()) as response:
        assert response.status_code == 200
    left = time.time()  # leaving the block closes the unfinished response's connection
    record = upstream.wait_for_disconnect(0, timeout=2.0)
    assert record["disconnected"] - left < 1.0
    assert record["headers_sent"] is not None and record["tokens_sent"] == 0


def test_disconnect_mid_stream_stops_production(upstream: Upstream, client: httpx.Client) -> None:
    upstream.script({"tokens": ["t"] * 200, "tokens_per_second": 50})
    with connect_sse(client, "POST", "/chat/completions", json=chat()) as source:
        events = source.iter_sse()
        for _ in range(4):  # the role chunk and three deltas
            next(events)
    left = time.time()
    record = upstream.wait_for_disconnect(0, timeout=2.0)
    assert record["disconnected"] - left < 1.0
    sent = record["tokens_sent"]
    assert 3 <= sent < 10
    time.sleep(0.2)  # ten more deltas' worth of time: none may go out
    assert upstream.requests()[0]["tokens_sent"] == sent


def test_disconnect_during_a_delayed_non_streaming_answer(
    upstream: Upstream, client: httpx.Client
) -> None:
    upstream.script({"delay_first_token_ms": 10_000})
    with pytest.raises(httpx.ReadTimeout):
        client.post(
            "/chat/completions", json=chat(stream=False), timeout=httpx.Timeout(5, read=0.3)
        )
    left = time.time()
    record = upstream.wait_for_disconnect(0, timeout=2.0)
    assert record["disconnected"] - left < 1.0
    assert record["headers_sent"] is None and record["completed"] is False


def test_wait_for_disconnect_times_out_when_the_client_stays(
    upstream: Upstream, client: httpx.Client
) -> None:
    upstream.script({"stall_after_tokens": 0})
    with client.stream("POST", "/chat/completions", json=chat()):
        with pytest.raises(TimeoutError):
            upstream.wait_for_disconnect(0, timeout=0.2)
    upstream.wait_for_disconnect(0, timeout=2.0)


# --- the process ---------------------------------------------------------------------------


def test_stop_and_kill_end_the_process(make_upstream: Any) -> None:
    """After stop() the port refuses connections; kill() breaks a stream in flight."""
    first: Upstream = make_upstream()
    base_url = first.base_url
    first.stop()
    assert not first.running
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{base_url}/models", trust_env=False)

    second: Upstream = make_upstream()
    second.script({"stall_after_tokens": 1})
    with httpx.Client(base_url=second.base_url, trust_env=False) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            with connect_sse(client, "POST", "/chat/completions", json=chat()) as source:
                for _ in source.iter_sse():
                    second.kill()


def test_kept_alive_connections_are_not_slowed_by_nagle(
    upstream: Upstream, client: httpx.Client
) -> None:
    """Small writes must go out at once (TCP_NODELAY), or each delta waits ~40 ms for an ACK."""
    upstream.script({"tokens": ["x"] * 30, "tokens_per_second": 0})
    sse_data(client, chat())  # warm the connection up
    sent = time.monotonic()
    sse_data(client, chat())
    for _ in range(10):
        upstream.requests()
    assert time.monotonic() - sent < 0.3


def test_server_exits_when_its_parent_dies(tmp_path: Any) -> None:
    """A test run killed without teardown must not leave upstream servers behind."""
    script = tmp_path / "parent.py"
    script.write_text(
        "import os, sys\n"
        f"sys.path.insert(0, {str(Path(__file__).parents[1])!r})\n"
        "from upstream.control import Upstream\n"
        "server = Upstream().start()\n"
        "print(server.process.pid, flush=True)\n"
        "os._exit(0)\n"
    )
    # stderr not captured: the server inherits it, and would hold a captured pipe open.
    parent = subprocess.run(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        timeout=10,
        check=True,
    )
    pid = int(parent.stdout)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if not alive(pid):
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    pytest.fail("the upstream outlived its parent")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    return "\nState:\tZ" not in status  # a zombie has exited; only its reaper is missing
