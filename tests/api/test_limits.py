"""Limits over HTTP: what one user may ask of the gateway, and which pages may call it.

- answers generating at once per user: ``429 too_many_streams`` with
  ``Retry-After``, before anything is recorded; a slot frees however an answer ends;
- message length: ``422`` naming the field (``400`` in OpenAI's shape);
- answer length: cut exactly at ``max_answer_chars``, ending ``length``, stored so;
- requests per minute per user: ``429 rate_limited`` with ``Retry-After``, a sliding
  window; never refused: following a stream, the channel, Stop;
- CORS: no headers at all by default, an exact allowlist when configured.

``Chat``'s side of the first three (every ending, exact cuts) is tested without
HTTP in ``tests/chat/test_service.py``. Here a real server shows the statuses,
shapes and ``Retry-After`` clients get, and that ``app.py`` gives the rate limit
to the right routers and installs CORS.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from conftest import RunningServer, ServerFactory, read_events
from helpers import ask, data_of, follow, last, text_of
from typewriter.api.rate_limit import RateLimiter

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

MESSAGE = "Hello,\r\nworld!\n\n🎉 emoji, 什么是SSE? \r done"
FAST = {"simulate": {"tokens_per_second": 2000}}
STALLED = {"simulate": {"stall_after_tokens": 1}}  # generates until stopped


def contract_error(response: httpx.Response, status: int, code: str) -> str:
    """The contract's error shape; returns the message."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and isinstance(error["message"], str) and error["message"]
    assert "type" not in error
    message: str = error["message"]
    return message


def openai_error(response: httpx.Response, status: int, kind: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == kind
    return error


def retry_after(response: httpx.Response) -> int:
    value = response.headers["retry-after"]
    assert value.isdigit(), value
    return int(value)


async def streams_started(client: httpx.AsyncClient, *, until: str) -> list[str]:
    """The streams the user's channel shows starting, in order, up to ``until``'s start."""
    started: list[str] = []
    async with client.stream("GET", "/v1/events", params={"last_event_id": "0"}) as channel:
        async with asyncio.timeout(30):
            while until not in started:
                for event in await read_events(channel, limit=1):
                    if event.event == "start":
                        started.append(data_of(event)["stream_id"])
    return started


async def conversation_count(client: httpx.AsyncClient) -> int:
    response = await client.get("/v1/conversations", params={"limit": 100})
    assert response.status_code == 200, response.text
    return len(response.json()["data"])


async def test_one_answer_too_many_is_refused_until_one_ends(make_server: ServerFactory) -> None:
    server = make_server(max_streams_per_user=2, limit_loopback=True)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        first = await ask(client, "one two three", assistant="echo", options=STALLED)
        quick = await ask(client, MESSAGE, assistant="echo", options=FAST)
        assert last(await follow(client, quick["events_url"]), "end")["finish_reason"] == "stop"
        second = await ask(client, "four five six", assistant="echo", options=STALLED)
        stored = await conversation_count(client)

        body = {"message": "seven", "assistant": "echo", "options": STALLED}
        refused = await client.post("/v1/chat", json=body)
        message = contract_error(refused, 429, "too_many_streams")
        assert "2" in message
        assert 1 <= retry_after(refused) <= 5
        direct = await client.post("/v1/chat", json=body, headers={"accept": "text/event-stream"})
        contract_error(direct, 429, "too_many_streams")
        completion = await client.post(
            "/v1/chat/completions",
            json={"model": "echo", "messages": [{"role": "user", "content": "hi"}]},
        )
        assert openai_error(completion, 429, "rate_limit_error")["code"] == "too_many_streams"
        assert 1 <= retry_after(completion) <= 5
        assert await conversation_count(client) == stored, "a refused question was recorded"

        stop = await client.post(f"/v1/streams/{first['stream_id']}/cancel")
        assert stop.status_code == 202
        ended = await follow(client, first["events_url"])
        assert last(ended, "end")["finish_reason"] == "cancelled"
        # The stream has ended: a new answer is accepted at once, no waiting.
        third = await ask(client, "eight", assistant="echo", options=STALLED)
        contract_error(await client.post("/v1/chat", json=body), 429, "too_many_streams")
        for started in (second, third):
            await client.post(f"/v1/streams/{started['stream_id']}/cancel")


async def test_messages_longer_than_the_limit_are_refused(make_server: ServerFactory) -> None:
    server = make_server(max_message_chars=20)
    longest = "🎉 什么是SSE? abcdefghij"  # 20 characters, 29 bytes in UTF-8
    assert len(longest) == 20
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        accepted = await ask(client, longest, assistant="echo", options=FAST)
        assert text_of(await follow(client, accepted["events_url"])) == longest
        stored = await conversation_count(client)

        refused = await client.post(
            "/v1/chat", json={"message": longest + "!", "assistant": "echo"}
        )
        contract_error(refused, 422, "invalid_field")
        fields = refused.json()["error"]["fields"]
        assert [f["field"] for f in fields] == ["message"] and "20" in fields[0]["message"]
        assert await conversation_count(client) == stored

        messages = [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": longest},
        ]
        whole = await client.post(
            "/v1/chat/completions", json={"model": "echo", "messages": messages}
        )
        assert whole.status_code == 200, whole.text
        assert whole.json()["choices"][0]["message"]["content"] == longest
        for index in (0, 1):
            too_long = [dict(m) for m in messages]
            too_long[index]["content"] = "x" * 21
            response = await client.post(
                "/v1/chat/completions", json={"model": "echo", "messages": too_long}
            )
            error = openai_error(response, 400, "invalid_request_error")
            assert error["param"] == f"messages[{index}].content"
            assert error["code"] == "invalid_field"
        # No refused question started a stream: the channel shows only the accepted ones.
        marker = await ask(client, "marker", assistant="echo", options=FAST)
        started = await streams_started(client, until=marker["stream_id"])
        accepted_ids = [accepted["stream_id"], whole.headers["x-stream-id"], marker["stream_id"]]
        assert started == accepted_ids


async def test_long_answers_end_with_length_at_the_limit(make_server: ServerFactory) -> None:
    server = make_server(max_answer_chars=10)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        started = await ask(client, MESSAGE, assistant="echo", options=FAST)
        got = await follow(client, started["events_url"])
        assert text_of(got) == MESSAGE[:10]  # 10 is not a multiple of echo's 4: a cut piece
        assert "error" not in [e.event for e in got]
        assert last(got, "end")["finish_reason"] == "length"
        conversation = await client.get(f"/v1/conversations/{started['conversation_id']}")
        answer = conversation.json()["messages"][-1]
        assert (answer["role"], answer["text"]) == ("assistant", MESSAGE[:10])
        assert answer["finish_reason"] == "length"

        exact = await ask(client, MESSAGE[:10], assistant="echo", options=FAST)
        got = await follow(client, exact["events_url"])
        assert (text_of(got), last(got, "end")["finish_reason"]) == (MESSAGE[:10], "stop")

        body = {"message": MESSAGE, "assistant": "echo", "options": FAST}
        async with client.stream(
            "POST", "/v1/chat", json=body, headers={"accept": "text/event-stream"}
        ) as response:
            direct = await read_events(response)
        assert text_of(direct) == MESSAGE[:10]
        assert data_of(direct[-1])["finish_reason"] == "length"

        completion = await client.post(
            "/v1/chat/completions",
            json={"model": "echo", "messages": [{"role": "user", "content": MESSAGE}]},
        )
        choice = completion.json()["choices"][0]
        assert (choice["message"]["content"], choice["finish_reason"]) == (MESSAGE[:10], "length")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_rate_limiter_is_a_sliding_window_per_user() -> None:
    clock = Clock()
    limiter = RateLimiter(3, window=10.0, clock=clock)
    assert [limiter.hit("ann") for _ in range(2)] == [0.0, 0.0]
    clock.now += 4
    assert limiter.hit("ann") == 0.0
    assert limiter.hit("ann") == pytest.approx(6.0)  # until the first leaves the window
    assert limiter.hit("bob") == 0.0  # per user
    clock.now += 5.9
    assert limiter.hit("ann") == pytest.approx(0.1)  # refusals were not counted
    clock.now += 0.1
    assert limiter.hit("ann") == 0.0  # the first two left; only one slot was asked
    assert limiter.hit("ann") == 0.0
    assert limiter.hit("ann") == pytest.approx(4.0)  # not a fixed window: the third remains


def test_rate_limiter_forgets_idle_users() -> None:
    clock = Clock()
    limiter = RateLimiter(2, window=10.0, clock=clock)
    for user in range(1000):
        limiter.hit(f"user{user}")
    assert limiter.users == 1000
    clock.now += 10.5
    limiter.hit("ann")
    assert limiter.users == 1


async def test_requests_over_the_rate_get_429_until_the_window_moves(
    make_server: ServerFactory,
) -> None:
    server = make_server(requests_per_minute=3, limit_loopback=True)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        for _ in range(3):
            assert (await client.get("/v1/assistants")).status_code == 200
        refused = await client.get("/v1/assistants")
        assert "requests_per_minute = 3" in contract_error(refused, 429, "rate_limited")
        assert 55 <= retry_after(refused) <= 60  # the app's window is a minute

    server = make_server(requests_per_minute=3, limit_loopback=True)
    clock = Clock()  # the window moves when the test says, not after a sleep
    server.server.app.state.rate_limiter = RateLimiter(3, window=2.0, clock=clock)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        started = await ask(client, MESSAGE, assistant="echo", options=STALLED)
        assert (await client.get("/v1/assistants")).status_code == 200
        assert (await client.get("/v1/models")).status_code == 200
        refused = await client.post("/v1/chat", json={"message": "hi", "assistant": "echo"})
        contract_error(refused, 429, "rate_limited")
        assert retry_after(refused) == 2  # all three were accepted at the same instant
        models = await client.get("/v1/models")
        assert openai_error(models, 429, "rate_limit_error")["code"] == "rate_limited"
        assert (await client.get("/healthz")).status_code == 200  # not a user's request

        # Following, the channel and Stop keep an answer going: never refused.
        async with client.stream("GET", "/v1/events") as channel:
            assert channel.status_code == 200
        stop = await client.post(f"/v1/streams/{started['stream_id']}/cancel")
        assert stop.status_code == 202
        ended = await follow(client, started["events_url"])
        assert last(ended, "end")["finish_reason"] == "cancelled"

        clock.now += retry_after(refused) - 0.5
        assert (await client.get("/v1/assistants")).status_code == 429
        clock.now += 0.5  # Retry-After was exactly enough
        assert (await client.get("/v1/assistants")).status_code == 200


PREFLIGHT = {
    "access-control-request-method": "POST",
    "access-control-request-headers": "authorization, content-type, last-event-id",
}


async def test_cors_allows_exactly_the_configured_origins(make_server: ServerFactory) -> None:
    server = make_server(
        cors_origins=["https://chat.example/"], requests_per_minute=1, limit_loopback=True
    )
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        allowed = await client.options(
            "/v1/chat", headers={"origin": "https://chat.example", **PREFLIGHT}
        )
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == "https://chat.example"
        methods = allowed.headers["access-control-allow-methods"]
        assert {"GET", "POST", "PATCH", "DELETE", "OPTIONS"} <= set(methods.split(", "))
        headers = allowed.headers["access-control-allow-headers"].lower()
        assert {"authorization", "content-type", "last-event-id"} <= set(headers.split(", "))
        assert "access-control-allow-credentials" not in allowed.headers

        for origin in ("https://evil.example", "http://chat.example", "https://chat.example:8443"):
            other = await client.options("/v1/chat", headers={"origin": origin, **PREFLIGHT})
            assert "access-control-allow-origin" not in other.headers, origin

        origin = {"origin": "https://chat.example"}
        started = await client.post(
            "/v1/chat", json={"message": "hi", "assistant": "echo"}, headers=origin
        )
        assert started.status_code == 202
        assert started.headers["access-control-allow-origin"] == "https://chat.example"
        exposed = started.headers["access-control-expose-headers"].lower()
        assert {"x-stream-id", "location", "retry-after"} <= set(exposed.split(", "))
        # A page can read why it was refused and how long to wait.
        refused = await client.get("/v1/assistants", headers=origin)
        assert refused.status_code == 429
        assert refused.headers["access-control-allow-origin"] == "https://chat.example"
        # EventSource from the page: the stream itself carries the header too.
        events_url = started.json()["events_url"]
        async with client.stream("GET", events_url, headers=origin) as response:
            assert response.headers["access-control-allow-origin"] == "https://chat.example"
            await response.aread()
        foreign = await client.get(events_url, headers={"origin": "https://evil.example"})
        assert "access-control-allow-origin" not in foreign.headers


async def test_without_origins_there_is_no_cors_at_all(server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        preflight = await client.options(
            "/v1/chat", headers={"origin": "https://chat.example", **PREFLIGHT}
        )
        assert preflight.status_code != 200
        simple = await client.get("/v1/assistants", headers={"origin": "https://chat.example"})
        assert simple.status_code == 200
        for response in (preflight, simple):
            assert not [h for h in response.headers if h.startswith("access-control-")]
