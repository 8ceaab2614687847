"""The ways an answer ends early: Stop, disconnect, grace expiry, stall, failure."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from conftest import ServerFactory, read_events
from helpers import ask, data_of, follow, last, text_of
from typewriter.models.simulated import CANNED_ANSWER

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.integration,
    pytest.mark.parametrize("broker_url", ["memory", "redis"], indirect=True),
]

SLOW = {"simulate": {"tokens_per_second": 20}}
GENEROUS = 30.0


async def end_on_channel(client: httpx.AsyncClient, stream_id: str) -> dict[str, Any]:
    """The stream's ``end``, waited for on the user's channel: a channel listener is not
    a listener of the stream, so waiting there holds no grace period off."""
    async with client.stream("GET", "/v1/events", params={"last_event_id": "0"}) as channel:
        async with asyncio.timeout(GENEROUS):
            while True:
                for event in await read_events(channel, limit=1):
                    if event.event == "end" and data_of(event)["stream_id"] == stream_id:
                        return data_of(event)


async def test_stop_endpoint_ends_the_answer_cancelled(client: httpx.AsyncClient) -> None:
    started = await ask(client, "question", options=SLOW)
    async with client.stream("GET", started["events_url"]) as response:
        head = await read_events(response, limit=4)
        stop = await client.post(f"/v1/streams/{started['stream_id']}/cancel")
        assert stop.status_code == 202
        async with asyncio.timeout(GENEROUS):
            rest = await read_events(response)
    events = head + rest
    assert last(events, "end")["finish_reason"] == "cancelled"
    assert not [e for e in events if e.event == "error"]
    shown = text_of(events)
    assert shown and CANNED_ANSWER.startswith(shown) and shown != CANNED_ANSWER


async def test_closing_a_direct_response_stops_the_model(client: httpx.AsyncClient) -> None:
    body = {"message": "question", "options": SLOW}
    async with client.stream(
        "POST", "/v1/chat", json=body, headers={"accept": "text/event-stream"}
    ) as direct:
        stream_id = direct.headers["x-stream-id"]
        await read_events(direct, limit=3)
        async with client.stream("GET", f"/v1/streams/{stream_id}/events") as watcher:
            await read_events(watcher, limit=3)
            await direct.aclose()  # the user pressed Stop: the browser aborted the fetch
            async with asyncio.timeout(GENEROUS):
                rest = await read_events(watcher)
    assert last(rest, "end")["finish_reason"] == "cancelled"


async def test_direct_with_continue_survives_a_disconnect(client: httpx.AsyncClient) -> None:
    text = "keep going after I leave " * 4
    body = {
        "message": text,
        "assistant": "echo",
        "on_disconnect": "continue",
        "options": {"simulate": {"tokens_per_second": 100}},
    }
    async with client.stream(
        "POST", "/v1/chat", json=body, headers={"accept": "text/event-stream"}
    ) as direct:
        stream_id = direct.headers["x-stream-id"]
        head = await read_events(direct, limit=3)
    rest = await follow(client, f"/v1/streams/{stream_id}/events", last_event_id=head[-1].id)
    assert text_of(head + rest) == text
    assert last(rest, "end")["finish_reason"] == "stop"


async def test_a_detached_listener_leaving_does_not_stop_generation(
    make_server: ServerFactory,
) -> None:
    server = make_server(grace=30)
    text = "still typing while nobody reads " * 3
    async with httpx.AsyncClient(base_url=server.url, timeout=GENEROUS) as client:
        started = await ask(
            client, text, assistant="echo", options={"simulate": {"tokens_per_second": 100}}
        )
        head = await follow(client, started["events_url"], limit=2)
        ended = await end_on_channel(client, started["stream_id"])  # with nobody listening
        assert ended["finish_reason"] == "stop"
        rest = await follow(client, started["events_url"], last_event_id=head[-1].id)
    assert text_of(head + rest) == text
    assert last(rest, "end")["finish_reason"] == "stop"


async def test_nobody_listening_for_the_grace_period_cancels(make_server: ServerFactory) -> None:
    server = make_server(grace=0.3)
    async with httpx.AsyncClient(base_url=server.url, timeout=GENEROUS) as client:
        started = await ask(client, "question", options=SLOW)
        ended = await end_on_channel(client, started["stream_id"])
        assert ended["finish_reason"] == "cancelled"
        events = await follow(client, started["events_url"])
    assert last(events, "end")["finish_reason"] == "cancelled"
    assert text_of(events) != CANNED_ANSWER


async def test_a_stalled_model_ends_with_timeout(make_server: ServerFactory) -> None:
    server = make_server(idle_timeout=0.3)
    async with httpx.AsyncClient(base_url=server.url, timeout=GENEROUS) as client:
        options = {"simulate": {"tokens_per_second": 1000, "stall_after_tokens": 2}}
        started = await ask(client, "abcdefghijklmnop", assistant="echo", options=options)
        async with asyncio.timeout(GENEROUS):
            events = await follow(client, started["events_url"])
    assert [e.event for e in events] == ["start", "delta", "delta", "error", "end"]
    assert data_of(events[3])["code"] == "upstream_timeout"
    assert last(events, "end")["finish_reason"] == "timeout"
    assert text_of(events) == "abcdefgh"


async def test_no_first_token_in_time_ends_with_timeout(make_server: ServerFactory) -> None:
    server = make_server(first_token_timeout=0.3)
    async with httpx.AsyncClient(base_url=server.url, timeout=GENEROUS) as client:
        options = {"simulate": {"first_token_delay_ms": 60_000}}
        started = await ask(client, "abc", assistant="echo", options=options)
        async with asyncio.timeout(GENEROUS):
            events = await follow(client, started["events_url"])
    assert [e.event for e in events] == ["start", "error", "end"]
    assert last(events, "end")["finish_reason"] == "timeout"


async def test_a_failing_model_sends_error_then_end(client: httpx.AsyncClient) -> None:
    options = {"simulate": {"tokens_per_second": 1000, "fail_after_tokens": 3}}
    started = await ask(client, "abcdefghijklmnopqrstuvwxyz", assistant="echo", options=options)
    events = await follow(client, started["events_url"])
    assert [e.event for e in events] == ["start", "delta", "delta", "delta", "error", "end"]
    error = data_of(events[4])
    assert error["code"] == "upstream_error" and "3 tokens" in error["message"]
    assert last(events, "end")["finish_reason"] == "error"
    assert text_of(events) == "abcdefghijkl"


async def test_cancel_of_a_finished_or_unknown_stream(client: httpx.AsyncClient) -> None:
    started = await ask(
        client, "abc", assistant="echo", options={"simulate": {"tokens_per_second": 1000}}
    )
    events = await follow(client, started["events_url"])
    assert last(events, "end")["finish_reason"] == "stop"
    again = await client.post(f"/v1/streams/{started['stream_id']}/cancel")
    assert again.status_code == 202 and again.json()["finished"] is True
    unknown = await client.post("/v1/streams/st_nothing/cancel")
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "stream_not_found"
