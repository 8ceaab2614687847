"""Races on the store, on a real server, against SQLite and PostgreSQL.

Each test fires many requests at once (``asyncio.gather`` over real sockets) where two
writes meet in the database: ratings of one answer, an ask and the deletion of its
conversation, asks into one conversation. None may answer a 5xx or leave the history out
of order; a conversation answers one question at a time (``409 answer_in_progress``), and
deleting it stops the answer it is writing.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from conftest import RunningServer, ServerFactory, read_events
from helpers import ask, follow, last, text_of

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

FAST = {"simulate": {"tokens_per_second": 5000}}
SLOW = {"simulate": {"tokens_per_second": 20}}  # still writing when the race is run
LONG = "x" * 1600  # 400 tokens of 4 characters, 20 s at SLOW: ends only if stopped


@pytest.fixture
def server(database_url: str, make_server: ServerFactory) -> RunningServer:
    """The server stops before its database is dropped (fixtures end in reverse order)."""
    return make_server(
        database_url=database_url, requests_per_minute=100_000, max_streams_per_user=10_000
    )


@pytest.fixture
async def client(server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    # A connection per request: one kept open could be closed by the server as idle just as
    # it is reused, which is a client's problem, not a race of the store's.
    limits = httpx.Limits(max_connections=500, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=server.url, timeout=60, limits=limits) as http:
        yield http


def assert_no_server_errors(responses: list[httpx.Response]) -> None:
    errors = [f"{r.status_code} {r.text[:200]}" for r in responses if r.status_code >= 500]
    assert not errors, f"{len(errors)} of {len(responses)} answered >= 500, as {errors[:3]}"


async def conversation(client: httpx.AsyncClient, conversation_id: str) -> dict[str, Any]:
    response = await client.get(f"/v1/conversations/{conversation_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def settled(client: httpx.AsyncClient, conversation_id: str) -> list[dict[str, Any]]:
    """The conversation's messages once none is streaming."""
    async with asyncio.timeout(30):
        while True:
            messages: list[dict[str, Any]] = (await conversation(client, conversation_id))[
                "messages"
            ]
            if all(m["status"] != "streaming" for m in messages):
                return messages
            await asyncio.sleep(0.05)


async def test_concurrent_ratings_of_one_answer_store_one(client: httpx.AsyncClient) -> None:
    asked = await ask(client, "rate me", assistant="echo", options=FAST)
    await follow(client, asked["events_url"])
    url = f"/v1/messages/{asked['message_id']}/feedback"
    ratings = [1 if i % 2 else -1 for i in range(240)]
    responses = await asyncio.gather(
        *(
            client.post(url, json={"rating": r, "comment": f"take {i}"})
            for i, r in enumerate(ratings)
        )
    )
    assert_no_server_errors(responses)
    assert Counter(r.status_code for r in responses) == {200: 240}
    (answer,) = [m for m in await settled(client, asked["conversation_id"]) if m["role"] != "user"]
    stored = answer["feedback"]
    assert stored is not None and stored["rating"] in (1, -1)
    assert any(r.json() == {"message_id": asked["message_id"], **stored} for r in responses)


async def test_asks_racing_the_deletion_of_their_conversation(
    client: httpx.AsyncClient,
) -> None:
    pairs = 120
    created = [await client.post("/v1/conversations", json={}) for _ in range(pairs)]
    ids = [r.json()["id"] for r in created]

    async def delete(conversation_id: str) -> httpx.Response:
        return await client.delete(f"/v1/conversations/{conversation_id}")

    async def ask_into(conversation_id: str) -> httpx.Response:
        body = {"message": LONG, "conversation_id": conversation_id, "assistant": "echo"}
        return await client.post("/v1/chat", json={**body, "options": SLOW})

    raced = await asyncio.gather(*(f(i) for i in ids for f in (ask_into, delete)))
    asks, deletes = raced[0::2], raced[1::2]
    assert_no_server_errors(list(raced))
    assert {r.status_code for r in deletes} == {204}
    assert {r.status_code for r in asks} <= {202, 404}
    assert all(
        r.json()["error"]["code"] == "conversation_not_found" for r in asks if r.status_code == 404
    )
    accepted = [r.json() for r in asks if r.status_code == 202]
    ends = await asyncio.gather(*(follow(client, a["events_url"]) for a in accepted))
    assert [last(events, "end")["finish_reason"] for events in ends] == ["cancelled"] * len(
        accepted
    )


async def test_concurrent_asks_into_one_conversation_answer_one_at_a_time(
    client: httpx.AsyncClient,
) -> None:
    first = await ask(client, "q0", assistant="echo", options=FAST)
    await follow(client, first["events_url"])
    conversation_id = first["conversation_id"]
    body = {"conversation_id": conversation_id, "assistant": "echo", "options": SLOW}
    responses = await asyncio.gather(
        *(client.post("/v1/chat", json={"message": f"q{i} {LONG}", **body}) for i in range(1, 11))
    )
    assert_no_server_errors(responses)
    assert sorted(r.status_code for r in responses) == [202] + [409] * 9
    refused = [r.json()["error"] for r in responses if r.status_code == 409]
    (accepted,) = [r.json() for r in responses if r.status_code == 202]
    assert {e["code"] for e in refused} == {"answer_in_progress"}
    assert {e["stream_id"] for e in refused} == {accepted["stream_id"]}
    await client.post(f"/v1/streams/{accepted['stream_id']}/cancel")
    await follow(client, accepted["events_url"])

    history_check = {"simulate": {"tokens_per_second": 5000, "echo_history": True}}
    echoed = await ask(
        client, "last", conversation_id=conversation_id, assistant="echo", options=history_check
    )
    seen = json.loads(text_of(await follow(client, echoed["events_url"])))
    roles = [m["role"] for m in seen]
    assert roles == ["user", "assistant", "user", "assistant", "user"], seen
    messages = await settled(client, conversation_id)
    assert [m["role"] for m in messages] == ["user", "assistant"] * 3
    for question, answer in zip(messages[0::2], messages[1::2], strict=True):
        assert answer["reply_to"] == question["id"]


async def test_regenerating_while_an_answer_streams_is_refused(client: httpx.AsyncClient) -> None:
    asked = await ask(client, LONG, assistant="echo", options=SLOW)
    response = await client.post(f"/v1/messages/{asked['message_id']}/regenerate")
    assert response.status_code == 409, response.text
    assert response.json()["error"]["code"] == "answer_in_progress"
    await client.post(f"/v1/streams/{asked['stream_id']}/cancel")
    await follow(client, asked["events_url"])
    again = await client.post(f"/v1/messages/{asked['message_id']}/regenerate")
    assert again.status_code == 202, again.text


async def test_deleting_a_conversation_ends_its_running_answer(client: httpx.AsyncClient) -> None:
    asked = await ask(client, LONG, assistant="echo", options=SLOW)
    async with client.stream("GET", asked["events_url"]) as response:
        assert [e.event for e in await read_events(response, limit=2)] == ["start", "delta"]
        deleted = await client.delete(f"/v1/conversations/{asked['conversation_id']}")
        assert deleted.status_code == 204
        async with asyncio.timeout(5):  # the whole answer would take 20 s
            rest = await read_events(response)
    assert last(rest, "end")["finish_reason"] == "cancelled"
    gone = await client.get(f"/v1/conversations/{asked['conversation_id']}")
    assert gone.status_code == 404


async def test_an_answer_whose_rows_vanish_unheard_stops_within_an_interval(
    client: httpx.AsyncClient, database_url: str
) -> None:
    """The conversation is deleted without the stream being told, as happens when the
    deletion lands between an ask recording its answer and creating its stream (under
    load, longer than the deletion looks for the stream): the answer's own checkpoints
    find its row gone and stop it, so the model is not kept generating for nobody."""
    asked = await ask(client, LONG, assistant="echo", options=SLOW)
    engine = create_async_engine(database_url)
    async with client.stream("GET", asked["events_url"]) as response:
        assert [e.event for e in await read_events(response, limit=2)] == ["start", "delta"]
        try:
            async with engine.begin() as connection:
                where = {"id": asked["conversation_id"]}
                await connection.execute(
                    sa.text("DELETE FROM messages WHERE conversation_id = :id"), where
                )
                await connection.execute(sa.text("DELETE FROM conversations WHERE id = :id"), where)
        finally:
            await engine.dispose()
        async with asyncio.timeout(5):  # the whole answer would take 20 s
            rest = await read_events(response)
    assert last(rest, "end")["finish_reason"] == "cancelled"


async def test_an_answer_left_streaming_by_a_lost_write_does_not_block_its_conversation(
    client: httpx.AsyncClient, database_url: str
) -> None:
    """Its stream has ended (the database was away when its end was written): the next
    question marks it ``interrupted`` and is answered."""
    asked = await ask(client, "hello", assistant="echo", options=FAST)
    await follow(client, asked["events_url"])
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                sa.text(
                    "UPDATE messages SET status = 'streaming', created_at = :at WHERE id = :id"
                ),
                {"at": time.time() - 3600, "id": asked["message_id"]},
            )
    finally:
        await engine.dispose()
    again = await client.post(
        "/v1/chat",
        json={"message": "again", "conversation_id": asked["conversation_id"], "assistant": "echo"},
    )
    assert again.status_code == 202, again.text
    messages = await settled(client, asked["conversation_id"])
    assert [m["status"] for m in messages] == ["done", "interrupted", "done", "done"]
