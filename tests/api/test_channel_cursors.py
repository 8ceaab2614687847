"""The channel's cursors over HTTP: ``connected`` resumes, and a cursor that cannot be resumed
gets 200 and a ``reset`` (never 410, on which EventSource gives up for good)."""

from __future__ import annotations

import httpx
import pytest

from conftest import read_events
from helpers import ask, data_of, follow

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.parametrize("broker_url", ["memory", "redis"], indirect=True),
]

FAST = {"simulate": {"tokens_per_second": 100_000}}


async def test_connected_carries_an_id_that_a_reconnect_resumes_from(
    client: httpx.AsyncClient,
) -> None:
    async with client.stream("GET", "/v1/events") as channel:
        [connected] = await read_events(channel, limit=1)
    assert connected.event == "connected" and connected.id
    assert data_of(connected)["cursor"] == connected.id
    started = await ask(client, "abc", assistant="echo", options=FAST)
    await follow(client, started["events_url"])  # the answer ended while nobody listened
    headers = {"last-event-id": connected.id}
    async with client.stream("GET", "/v1/events", headers=headers) as channel:
        events = await read_events(channel, limit=4)
    assert [e.event for e in events] == ["connected", "start", "delta", "end"]
    assert {data_of(e)["stream_id"] for e in events[1:]} == {started["stream_id"]}
    assert events[0].id == connected.id  # it resumed from where it was


async def test_a_cursor_behind_the_window_or_of_another_epoch_gets_200_and_a_reset(
    client: httpx.AsyncClient,
) -> None:
    async with client.stream("GET", "/v1/events") as channel:
        [connected] = await read_events(channel, limit=1)
    assert connected.id
    for _ in range(2):  # 2 × 6,002 events: past the 10,000 the channel keeps
        started = await ask(client, "w" * 24_000, assistant="echo", options=FAST)
        await follow(client, started["events_url"])
    epoch = connected.id.split("-")[0]
    last = 12_004
    for cursor, reason in [
        (connected.id, "window"),
        ("5", "epoch"),  # a cursor from before epochs
        (f"{int(epoch) - 1}-5", "epoch"),  # a Redis that lost its data, a restarted server
    ]:
        async with client.stream("GET", "/v1/events", headers={"last-event-id": cursor}) as again:
            assert again.status_code == 200, await again.aread()
            opening = await read_events(again, limit=2)
            assert [e.event for e in opening] == ["connected", "reset"]
            assert data_of(opening[1]) == {"cursor": opening[0].id, "reason": reason}
            assert opening[1].id == opening[0].id == f"{epoch}-{last}"
            live = await ask(client, "after", assistant="echo", options=FAST)
            events = await read_events(again, limit=4)  # then live events, from there on
        assert [e.event for e in events] == ["start", "delta", "delta", "end"]
        assert {data_of(e)["stream_id"] for e in events} == {live["stream_id"]}
        assert [e.id for e in events] == [f"{epoch}-{last + n}" for n in range(1, 5)]
        last += 4
