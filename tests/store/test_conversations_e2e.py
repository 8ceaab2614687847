"""Conversations over HTTP on a real server, against SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from conftest import RunningServer, ServerFactory, read_events
from helpers import ask, follow, last, text_of

pytestmark = [pytest.mark.anyio, pytest.mark.integration]
FAST = {"simulate": {"tokens_per_second": 2000}}


@pytest.fixture
def server(make_server: ServerFactory, database_url: str) -> RunningServer:
    return make_server(database_url=database_url)


@pytest.fixture
async def client(server: RunningServer) -> Any:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        yield http


async def answer_of(client: httpx.AsyncClient, conversation_id: str) -> dict[str, Any]:
    """The last message of a conversation once it is no longer streaming."""
    async with asyncio.timeout(20):
        while True:
            body = (await client.get(f"/v1/conversations/{conversation_id}")).json()
            final: dict[str, Any] = body["messages"][-1]
            if final["status"] != "streaming":
                return final
            await asyncio.sleep(0.02)


async def test_history_reaches_the_model(client: httpx.AsyncClient) -> None:
    first = await ask(client, "my name is Ada", assistant="echo", options=FAST)
    await follow(client, first["events_url"])
    second = await ask(
        client,
        "what is my name?",
        assistant="echo",
        conversation_id=first["conversation_id"],
        options={"simulate": {"tokens_per_second": 5000, "echo_history": True}},
    )
    received = json.loads(text_of(await follow(client, second["events_url"])))
    assert received == [
        {"role": "user", "content": "my name is Ada"},
        {"role": "assistant", "content": "my name is Ada"},
        {"role": "user", "content": "what is my name?"},
    ]


async def test_a_stopped_answer_is_kept_as_far_as_it_got(client: httpx.AsyncClient) -> None:
    started = await ask(
        client, "x" * 400, assistant="echo", options={"simulate": {"tokens_per_second": 40}}
    )
    async with client.stream("GET", started["events_url"]) as response:
        head = await read_events(response, limit=5)
        await client.post(f"/v1/streams/{started['stream_id']}/cancel")
        rest = await read_events(response)
    shown = text_of(head + rest)
    stored = await answer_of(client, started["conversation_id"])
    assert (stored["text"], stored["finish_reason"], stored["status"]) == (
        shown,
        "cancelled",
        "done",
    )
    assert 0 < len(shown) < 400


async def test_a_failed_answer_is_kept_with_its_text(client: httpx.AsyncClient) -> None:
    options = {"simulate": {"tokens_per_second": 2000, "fail_after_tokens": 3}}
    started = await ask(client, "abcdefghijklmnop", assistant="echo", options=options)
    events = await follow(client, started["events_url"])
    stored = await answer_of(client, started["conversation_id"])
    assert (stored["text"], stored["finish_reason"]) == (text_of(events), "error")
    assert stored["text"] == "abcdefghijkl"


async def test_a_direct_disconnect_keeps_what_was_shown(client: httpx.AsyncClient) -> None:
    body = {
        "message": "y" * 400,
        "assistant": "echo",
        "options": {"simulate": {"tokens_per_second": 40}},
    }
    async with client.stream(
        "POST", "/v1/chat", json=body, headers={"accept": "text/event-stream"}
    ) as direct:
        shown = await read_events(direct, limit=4)
    start = json.loads(shown[0].data)
    stored = await answer_of(client, start["conversation_id"])
    assert stored["finish_reason"] == "cancelled"
    assert stored["text"].startswith(text_of(shown)) and len(stored["text"]) < 400


async def test_the_conversation_endpoints(client: httpx.AsyncClient) -> None:
    created = await client.post("/v1/conversations", json={"title": "Plans", "assistant": "echo"})
    assert created.status_code == 201
    cid = created.json()["id"]
    started = await ask(client, "hello", assistant="echo", conversation_id=cid, options=FAST)
    await follow(client, started["events_url"])
    answer = await answer_of(client, cid)
    assert answer["usage"]["completion_tokens"] == 2 and answer["first_token_ms"] is not None
    listing = (await client.get("/v1/conversations", params={"limit": 1})).json()
    assert listing["data"][0]["id"] == cid
    renamed = await client.patch(f"/v1/conversations/{cid}", json={"title": "New plans"})
    assert renamed.json()["title"] == "New plans"
    rated = await client.post(
        f"/v1/messages/{answer['id']}/feedback", json={"rating": 1, "comment": "ok"}
    )
    assert rated.status_code == 200 and rated.json()["rating"] == 1
    again = await client.post(f"/v1/messages/{answer['id']}/regenerate", json={"options": FAST})
    assert again.status_code == 202
    events = await follow(client, again.json()["events_url"])
    assert text_of(events) == "hello" and last(events, "end")["finish_reason"] == "stop"
    whole = (await client.get(f"/v1/conversations/{cid}")).json()
    assert [m["role"] for m in whole["messages"]] == ["user", "assistant", "assistant"]
    assert whole["messages"][1]["feedback"]["comment"] == "ok"
    assert (await client.delete(f"/v1/conversations/{cid}/messages")).status_code == 204
    assert (await client.get(f"/v1/conversations/{cid}")).json()["messages"] == []
    assert (await client.delete(f"/v1/conversations/{cid}")).status_code == 204
    gone = await client.delete(f"/v1/conversations/{cid}")
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "conversation_not_found"


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "field"),
    [
        ("GET", "/v1/conversations?cursor=not-a-cursor", None, 422, "cursor"),
        ("GET", "/v1/conversations?limit=0", None, 422, "query.limit"),
        ("GET", "/v1/conversations?limit=1000", None, 422, "query.limit"),
        ("POST", "/v1/conversations", {"title": ""}, 422, "title"),
        ("POST", "/v1/conversations", {"assistant": "nope"}, 422, "assistant"),
        ("GET", "/v1/conversations/conv_unknown", None, 404, None),
        ("GET", "/v1/conversations/..%2F..%2Fetc", None, 404, None),
        ("PATCH", "/v1/conversations/conv_unknown", {"title": "x"}, 404, None),
        ("DELETE", "/v1/conversations/conv_unknown", None, 404, None),
        ("DELETE", "/v1/conversations/conv_unknown/messages", None, 404, None),
        ("POST", "/v1/messages/msg_unknown/regenerate", None, 404, None),
        ("POST", "/v1/messages/msg_unknown/feedback", {"rating": 1}, 404, None),
        ("POST", "/v1/chat", {"message": "x", "conversation_id": "conv_unknown"}, 404, None),
    ],
)
async def test_bad_requests(
    client: httpx.AsyncClient, method: str, path: str, body: Any, status: int, field: str | None
) -> None:
    response = await client.request(method, path, json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] and error["message"]
    if field is not None:
        assert field in [f["field"] for f in error["fields"]]


@pytest.mark.parametrize("rating", [7, 0, "1", None, 1.0, True, -2])
async def test_a_rating_must_be_one_or_minus_one(client: httpx.AsyncClient, rating: Any) -> None:
    started = await ask(client, "q", assistant="echo", options=FAST)
    await follow(client, started["events_url"])
    response = await client.post(
        f"/v1/messages/{started['message_id']}/feedback", json={"rating": rating}
    )
    assert response.status_code == 422
    assert response.json()["error"]["fields"][0]["field"] == "rating"
