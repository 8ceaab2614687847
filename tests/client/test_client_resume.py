"""Following resumes by itself, in both clients: a connection cut by the network mid-answer,
a response the server ends cleanly before ``end``, the server's ``retry:`` delay, and a
bound on the attempts when the network stays down. Through a real TCP proxy in front of a
real server; the answer's text is the echo of the question, so it is known exactly."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from client_calls import both, follow
from conftest import RunningServer, ServerFactory
from tcp_proxy import TcpProxy
from typewriter.client import AsyncClient, Client, ConnectionLost, StreamEvent
from typewriter.client.follow import ResumePolicy
from typewriter.events import Delta, End

pytestmark = pytest.mark.integration

# 120 pieces of 4 characters (echo), 40 a second: 3 s of answer, long enough to cut it
# while it types, short enough for a fast test.
QUESTION = "".join(f"{i:04d}" for i in range(120))
PACE = {"simulate": {"tokens_per_second": 40}}


class CountingProxy(TcpProxy):
    """A TcpProxy that notes when each connection was accepted (time.monotonic())."""

    def __init__(self, host: str, port: int) -> None:
        self.accepted: list[float] = []
        super().__init__(host, port)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted.append(time.monotonic())
        await super()._pipe(reader, writer)


def proxied(server: RunningServer) -> CountingProxy:
    address = urlsplit(server.url)
    assert address.hostname is not None and address.port is not None
    return CountingProxy(address.hostname, address.port)


@pytest.fixture
def fast_retry(make_server: ServerFactory) -> Iterator[tuple[RunningServer, CountingProxy]]:
    server = make_server(retry_ms=100)
    proxy = proxied(server)
    try:
        yield server, proxy
    finally:
        proxy.close()


def text(events: list[StreamEvent]) -> str:
    return "".join(e.event.text for e in events if isinstance(e.event, Delta))


def assert_whole_once(events: list[StreamEvent]) -> None:
    """Every event once, in order (ids 1..n), the text exact, ended ``stop``."""
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    assert text(events) == QUESTION
    end = events[-1].event
    assert isinstance(end, End) and end.finish_reason == "stop"


@pytest.mark.anyio
async def test_the_async_client_resumes_a_cut_connection_exactly(
    fast_retry: tuple[RunningServer, CountingProxy],
) -> None:
    """The network fails mid-answer and stays down a moment: the async client reconnects
    (refused at first) and the answer goes on with no gap and no duplicate."""
    server, proxy = fast_retry
    seen: list[StreamEvent] = []
    async with AsyncClient(f"http://{proxy.address}") as client:
        asked = await client.ask(QUESTION, assistant="echo", options=PACE)
        async for event in client.follow(asked):
            seen.append(event)
            if len(seen) == 10:
                await asyncio.to_thread(proxy.cut)
                await asyncio.sleep(0.4)  # the outage: reconnects are refused meanwhile
                await asyncio.to_thread(proxy.restore)
    assert_whole_once(seen)
    assert len(proxy.accepted) >= 2  # ask and follow (one kept-alive connection), resumed
    with Client(server.url) as direct:
        assert asked.conversation_id is not None
        stored = direct.conversation(asked.conversation_id)["messages"][-1]
    assert stored["text"] == QUESTION


@both
def test_a_cut_connection_resumes_in_both_clients(
    kind: str, fast_retry: tuple[RunningServer, CountingProxy]
) -> None:
    """Cut twice while the answer types: what was followed is what the stream holds."""
    server, proxy = fast_retry
    with Client(server.url) as client:
        asked = client.ask(QUESTION, assistant="echo", options=PACE)

    def cut_twice(event: StreamEvent) -> None:
        if event.id in (5, 40):
            proxy.cut()
            proxy.restore()

    seen = follow(kind, f"http://{proxy.address}", asked.stream_id, on_event=cut_twice)
    assert_whole_once(seen)
    assert len(proxy.accepted) == 3  # the first connection and two resumed ones
    assert follow(kind, server.url, asked) == seen  # the stream, read again once finished


@both
def test_a_response_closed_cleanly_before_end_is_resumed(
    kind: str, make_server: ServerFactory
) -> None:
    """With one listener allowed, a second listener replaces the client's: its response
    ends cleanly without ``end``; the client reconnects (replacing the second in turn)."""
    server = make_server(max_listeners_per_user=1, limit_loopback=True, retry_ms=50)
    with Client(server.url) as client:
        asked = client.ask(QUESTION, assistant="echo", options=PACE)
    other = httpx.Client(base_url=server.url, timeout=30)
    rival: list[httpx.Response] = []

    def open_a_rival(event: StreamEvent) -> None:
        if event.id == 5:
            response = other.send(other.build_request("GET", asked.events_url), stream=True)
            assert response.status_code == 200
            rival.append(response)

    try:
        seen = follow(kind, server.url, asked, on_event=open_a_rival)
        body = rival[0].read().decode()
    finally:
        for response in rival:
            response.close()
        other.close()
    assert_whole_once(seen)
    assert "event: end" not in body  # the rival was replaced: the client came back


@both
def test_the_servers_retry_is_the_first_reconnect_delay(
    kind: str, make_server: ServerFactory
) -> None:
    server = make_server(retry_ms=1500)
    proxy = proxied(server)
    cut_at: list[float] = []

    def cut(event: StreamEvent) -> None:
        if event.id == 5:
            cut_at.append(time.monotonic())
            proxy.cut()
            proxy.restore()

    try:
        with Client(server.url) as client:
            asked = client.ask(QUESTION, assistant="echo", options=PACE)
        seen = follow(kind, f"http://{proxy.address}", asked, on_event=cut)
    finally:
        proxy.close()
    assert_whole_once(seen)
    reconnected = [t - cut_at[0] for t in proxy.accepted if t > cut_at[0]]
    assert len(reconnected) == 1, reconnected
    assert 1.5 <= reconnected[0] < 3.5, reconnected  # retry: 1.5 s, not sooner


@both
def test_giving_up_after_max_reconnects_names_the_url(
    kind: str, fast_retry: tuple[RunningServer, CountingProxy]
) -> None:
    """The network stays down: three refused reconnects, then ``ConnectionLost`` with the
    stream and the last event delivered, so the caller can go on later."""
    server, proxy = fast_retry
    with Client(server.url) as client:
        asked = client.ask(QUESTION, assistant="echo", options=PACE)
    seen: list[StreamEvent] = []

    def cut_for_good(event: StreamEvent) -> None:
        seen.append(event)
        if event.id == 5:
            proxy.cut()

    url = f"http://{proxy.address}"
    with pytest.raises(ConnectionLost) as lost:
        follow(kind, url, asked, on_event=cut_for_good, max_reconnects=3)
    error = lost.value
    assert error.url == f"{url}/v1/streams/{asked.stream_id}/events"
    assert error.url in str(error) and "3 reconnects" in str(error)
    # the events read before the cut (the cut's chunk may hold a few more than 5) count
    assert [e.id for e in seen] == list(range(1, len(seen) + 1)) and len(seen) >= 5
    assert (error.stream_id, error.last_event_id, error.attempts) == (
        asked.stream_id,
        seen[-1].id,
        3,
    )
    proxy.restore()
    rest = follow(kind, url, asked.stream_id, after=error.last_event_id)
    assert_whole_once(seen + rest)


def test_the_delays_double_from_the_servers_retry_up_to_the_cap() -> None:
    """Sans-I/O: the first reconnect waits ``retry:`` exactly, then doubles (jittered
    between half and all of it), never above the cap."""
    policy = ResumePolicy(max_reconnects=10, cap=5.0)
    top = [policy.delay(0.5, attempt, lambda: 1.0) for attempt in range(6)]
    low = [policy.delay(0.5, attempt, lambda: 0.0) for attempt in range(6)]
    assert top == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert low == [0.5, 0.5, 1.0, 2.0, 2.5, 2.5]


def test_two_follows_of_one_client_in_two_threads_each_get_everything(
    server: RunningServer,
) -> None:
    """A follow's resume point and parser are its own: two at once on one ``Client``
    (a thread each) both get the whole answer, once."""
    with Client(server.url) as client:
        asked = client.ask(QUESTION, assistant="echo", options=PACE)
        results: list[list[StreamEvent]] = []
        worker = threading.Thread(target=lambda: results.append(list(client.follow(asked))))
        worker.start()
        mine = list(client.follow(asked))
        worker.join(30)
    assert results and results[0] == mine
    assert_whole_once(mine)


@both
def test_a_direct_ask_cut_mid_answer_is_resumed_by_its_stream_id(
    kind: str, fast_retry: tuple[RunningServer, CountingProxy]
) -> None:
    """``stream(direct=True)``: the answer comes in the ask's own response; cut, it goes on
    on the server (``on_disconnect: continue``) and the follow resumes it, exactly."""
    server, proxy = fast_retry
    seen: list[StreamEvent] = []

    def cut(event: StreamEvent) -> None:
        seen.append(event)
        if event.id == 5:
            proxy.cut()
            proxy.restore()

    url = f"http://{proxy.address}"
    if kind == "sync":
        with Client(url) as client:
            for event in client.stream(QUESTION, assistant="echo", options=PACE, direct=True):
                cut(event)
    else:

        async def run() -> None:
            async with AsyncClient(url) as client:
                async for event in client.stream(
                    QUESTION, assistant="echo", options=PACE, direct=True
                ):
                    cut(event)

        asyncio.run(run())
    assert_whole_once(seen)
    assert len(proxy.accepted) == 2  # the ask, then the resumed follow
