"""The gateway on the Redis broker, end to end: follow, resume after the end, Stop."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from conftest import ServerFactory, read_events
from helpers import ask, follow, last, text_of

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


@pytest.fixture
async def client(make_server: ServerFactory, redis_url: str) -> httpx.AsyncClient:  # type: ignore[misc]
    server = make_server(broker=redis_url)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        yield http


async def test_an_answer_streams_resumes_and_ends_with_204(client: httpx.AsyncClient) -> None:
    text = "over Redis, exactly once 🎉 " * 5
    started = await ask(
        client, text, assistant="echo", options={"simulate": {"tokens_per_second": 500}}
    )
    head = await follow(client, started["events_url"], limit=5)
    rest = await follow(client, started["events_url"], last_event_id=head[-1].id)
    assert text_of(head + rest) == text
    assert [int(e.id or 0) for e in head + rest] == list(range(1, len(head + rest) + 1))
    done = await client.get(started["events_url"], headers={"last-event-id": rest[-1].id or ""})
    assert done.status_code == 204


async def test_stop_ends_the_answer_cancelled(client: httpx.AsyncClient) -> None:
    started = await ask(client, "question", options={"simulate": {"tokens_per_second": 20}})
    async with client.stream("GET", started["events_url"]) as response:
        await read_events(response, limit=3)
        await client.post(f"/v1/streams/{started['stream_id']}/cancel")
        async with asyncio.timeout(30):
            rest = await read_events(response)
    assert last(rest, "end")["finish_reason"] == "cancelled"
