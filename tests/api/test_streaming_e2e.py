"""End to end over real sockets: asking, following, resuming, several listeners."""

from __future__ import annotations

import asyncio
import json
import socket

import httpx
import pytest

from conftest import RunningServer, ServerFactory, read_events
from helpers import ask, data_of, follow, last, text_of

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.integration,
    pytest.mark.parametrize("broker_url", ["memory", "redis"], indirect=True),
]

MESSAGE = "Hello,\r\nworld!\n\n🎉 emoji, 什么是SSE? \r tabs\tand \u2028 separators"
FAST = {"simulate": {"tokens_per_second": 2000}}


async def test_detached_answer_streams_with_the_contract_headers(
    client: httpx.AsyncClient,
) -> None:
    started = await ask(client, MESSAGE, assistant="echo", options=FAST)
    assert set(started) == {
        "stream_id",
        "conversation_id",
        "message_id",
        "question_id",
        "events_url",
    }
    async with client.stream("GET", started["events_url"]) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        raw = await response.aread()
    assert raw.startswith(b"retry: ")
    from typewriter import sse

    events = sse.Parser().feed(raw)
    assert [e.event for e in events][0] == "start"
    assert events[-1].event == "end"
    assert [int(e.id or 0) for e in events] == list(range(1, len(events) + 1))
    start = data_of(events[0])
    assert start["stream_id"] == started["stream_id"]
    assert start["message_id"] == started["message_id"]
    assert start["model"] == "echo"
    assert isinstance(start["created"], int)
    assert text_of(events) == MESSAGE
    end = data_of(events[-1])
    assert end["finish_reason"] == "stop"
    assert end["message_id"] == started["message_id"]
    assert end["usage"]["completion_tokens"] == len(events) - 2


async def test_direct_answer_streams_in_the_response(client: httpx.AsyncClient) -> None:
    body = {"message": MESSAGE, "assistant": "echo", "options": FAST}
    headers = {"accept": "text/event-stream"}
    async with client.stream("POST", "/v1/chat", json=body, headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        stream_id = response.headers["x-stream-id"]
        events = await read_events(response)
    assert data_of(events[0])["stream_id"] == stream_id
    assert text_of(events) == MESSAGE
    assert last(events, "end")["finish_reason"] == "stop"


async def test_reconnect_after_every_single_event_reassembles_exactly(
    client: httpx.AsyncClient,
) -> None:
    """An EventSource that loses its connection after each event, on a live stream."""
    started = await ask(
        client, MESSAGE, assistant="echo", options={"simulate": {"tokens_per_second": 200}}
    )
    seen: list[str] = []
    events = []
    last_id: str | None = None
    async with asyncio.timeout(60):
        while True:
            async with client.stream(
                "GET",
                started["events_url"],
                headers={"last-event-id": last_id} if last_id else {},
            ) as response:
                if response.status_code == 204:
                    break
                assert response.status_code == 200
                got = await read_events(response, limit=1)
            assert len(got) == 1
            events.extend(got)
            last_id = got[0].id
            seen.append(last_id or "")
    assert seen == [str(i) for i in range(1, len(seen) + 1)], "gap or duplicate"
    assert events[-1].event == "end"
    assert text_of(events) == MESSAGE


async def test_resume_from_every_boundary_of_a_finished_stream(client: httpx.AsyncClient) -> None:
    started = await ask(client, MESSAGE, assistant="echo", options=FAST)
    whole = await follow(client, started["events_url"])
    for cut in range(len(whole)):
        head = await follow(client, started["events_url"], limit=cut) if cut else []
        resumed_from = head[-1].id if head else None
        tail = (
            await follow(client, started["events_url"], last_event_id=resumed_from)
            if resumed_from != whole[-1].id
            else []
        )
        assert [e.id for e in head + tail] == [e.id for e in whole]
        assert text_of(head + tail) == MESSAGE


async def test_query_parameter_resumes_and_the_header_wins(client: httpx.AsyncClient) -> None:
    started = await ask(client, MESSAGE, assistant="echo", options=FAST)
    whole = await follow(client, started["events_url"])
    url = started["events_url"]
    async with client.stream("GET", f"{url}?last_event_id=3") as response:
        from_query = await read_events(response)
    assert from_query[0].id == "4"
    async with client.stream(
        "GET", f"{url}?last_event_id=3", headers={"last-event-id": "5"}
    ) as response:
        from_header = await read_events(response)
    assert from_header[0].id == "6"
    assert [e.id for e in from_header] == [e.id for e in whole[5:]]


async def test_after_the_end_a_reconnect_gets_204(client: httpx.AsyncClient) -> None:
    started = await ask(client, "abc", assistant="echo", options=FAST)
    events = await follow(client, started["events_url"])
    response = await client.get(
        started["events_url"], headers={"last-event-id": events[-1].id or ""}
    )
    assert response.status_code == 204
    assert response.content == b""
    beyond = await client.get(
        started["events_url"], headers={"last-event-id": str(int(events[-1].id or 0) + 1)}
    )
    assert beyond.status_code == 400


async def test_two_listeners_of_one_stream_both_get_the_whole_answer(
    client: httpx.AsyncClient,
) -> None:
    text = "two listeners, one stream " * 20
    started = await ask(
        client, text, assistant="echo", options={"simulate": {"tokens_per_second": 500}}
    )
    first, second = await asyncio.gather(
        follow(client, started["events_url"]), follow(client, started["events_url"])
    )
    assert text_of(first) == text_of(second) == text
    assert [e.id for e in first] == [e.id for e in second]


async def test_finished_stream_past_retention_is_gone(make_server: ServerFactory) -> None:
    server = make_server(retention=0.2)
    loop = asyncio.get_running_loop()
    async with httpx.AsyncClient(base_url=server.url) as client:
        started = await ask(client, "abc", assistant="echo", options=FAST)
        await follow(client, started["events_url"])
        deadline = loop.time() + 10
        while (response := await client.get(started["events_url"])).status_code != 410:
            assert response.status_code == 200, response.text
            assert loop.time() < deadline, "still readable 10 s after a retention of 0.2 s"
            await asyncio.sleep(0.05)  # polling what a client sees, at a bounded rate
        assert response.json()["error"]["code"] == "stream_expired"


async def test_user_channel_carries_every_stream_and_resumes(server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        async with client.stream("GET", "/v1/events") as channel:
            assert channel.status_code == 200
            # "connected" comes once the channel is subscribed: nothing asked after is missed.
            events = await read_events(channel, limit=1)
            one = await ask(client, "abcd", assistant="echo", options=FAST)
            two = await ask(client, "efgh", assistant="echo", options=FAST)
            async with asyncio.timeout(20):
                events += await read_events(channel, limit=2 * 3)
        assert events[0].event == "connected"
        by_stream: dict[str, list[str]] = {}
        for event in events[1:]:
            payload = json.loads(event.data)
            by_stream.setdefault(payload["stream_id"], []).append(event.event)
        assert by_stream == {
            one["stream_id"]: ["start", "delta", "end"],
            two["stream_id"]: ["start", "delta", "end"],
        }
        cursor = events[3].id
        assert cursor is not None
        async with client.stream("GET", "/v1/events", headers={"last-event-id": cursor}) as again:
            resumed = await read_events(again, limit=1 + 3)
        assert [e.id for e in resumed[1:]] == [e.id for e in events[4:]]


async def test_heartbeat_comments_keep_an_idle_stream_alive(make_server: ServerFactory) -> None:
    server = make_server(heartbeat=0.1)
    async with httpx.AsyncClient(base_url=server.url) as client:
        async with client.stream("GET", "/v1/events") as response:
            raw = b""
            async with asyncio.timeout(10):
                async for chunk in response.aiter_bytes():
                    raw += chunk
                    if raw.count(b": ping\n\n") >= 2:
                        break
    assert raw.startswith(b"retry: ")


async def test_shutdown_ends_open_streams_promptly(make_server: ServerFactory) -> None:
    server = make_server(heartbeat=60)
    async with httpx.AsyncClient(base_url=server.url) as client:
        async with client.stream("GET", "/v1/events") as response:
            assert response.status_code == 200
            loop = asyncio.get_running_loop()
            began = loop.time()
            stopping = loop.run_in_executor(None, server.stop)
            async with asyncio.timeout(10):
                await response.aread()  # the body ends cleanly rather than hanging
                await stopping
            assert loop.time() - began < 5


async def test_page_and_health(client: httpx.AsyncClient) -> None:
    page = await client.get("/")
    assert page.status_code == 200
    assert "/js/app.js" in page.text and 'id="stop"' in page.text
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    assistants = (await client.get("/v1/assistants")).json()["data"]
    assert {a["name"] for a in assistants} == {"default", "echo"}


async def test_a_listener_that_stops_reading_stalls_nobody(make_server: ServerFactory) -> None:
    """One client with a full socket buffer: the model and another listener go on."""
    text = "".join(f"{i:07d}," for i in range(25_000))  # 200 kB, 50,000 pieces
    server = make_server(max_message_chars=len(text), max_answer_chars=len(text))
    async with httpx.AsyncClient(base_url=server.url, timeout=30.0) as client:
        started = await ask(
            client, text, assistant="echo", options={"simulate": {"tokens_per_second": 100_000}}
        )
        host, port = server.url.removeprefix("http://").split(":")
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_connect(sock, (host, int(port)))
        request = f"GET {started['events_url']} HTTP/1.1\r\nHost: {host}\r\n\r\n"
        await loop.sock_sendall(sock, request.encode())
        try:
            async with asyncio.timeout(60):
                fast = await follow(client, started["events_url"])
            # The model typed to the end while one client read nothing.
            assert last(fast, "end")["finish_reason"] == "stop"
            assert text_of(fast) == text
            # the stuck client then reads at its own pace and still gets everything
            raw = bytearray()
            async with asyncio.timeout(60):
                while b"event: end" not in raw[-4096:]:
                    chunk = await loop.sock_recv(sock, 1 << 16)
                    assert chunk, "connection closed before the end"
                    raw += chunk
            assert raw.count(b"event: delta") == len(text) // 4
        finally:
            sock.close()
