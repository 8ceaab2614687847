"""``EventStreamResponse`` on its own: an ASGI app driven with our own ``receive`` and
``send``, fed by a real subscription of the in-process broker.

What a client reads over a socket is in ``test_streaming_e2e``; here each of the
response's duties is seen message by message: the head and the opening block,
heartbeats, one write per batch of pending entries, and the three ways a
response ends (the stream's ``end``, the client leaving, the server stopping).
"""

from __future__ import annotations

import asyncio
import json

import pytest
from starlette.types import Message

from typewriter import sse
from typewriter.api.event_stream import EventStreamResponse, OnDisconnect, OpenStreams
from typewriter.streams.base import Entry, Subscription
from typewriter.streams.memory import MemoryBroker

pytestmark = pytest.mark.anyio

OWNER = "ann"
WAIT = 5.0  # seconds: far longer than anything here takes, short enough to fail fast


class Watched(Subscription):
    """A broker's subscription that also says when the response closed it."""

    def __init__(self, inner: Subscription) -> None:
        self.inner = inner
        self.closed = asyncio.Event()

    @property
    def cursor(self) -> int:
        return self.inner.cursor

    async def next(self, deadline: float) -> list[Entry] | None:
        return await self.inner.next(deadline)

    def wake(self) -> None:
        self.inner.wake()

    async def close(self) -> None:
        await self.inner.close()
        self.closed.set()


class Peer:
    """The ASGI server's side of one response: keeps what it sends, in order, and can
    hold a write (a client that reads slowly) or leave (``http.disconnect``)."""

    def __init__(self) -> None:
        self.sent: asyncio.Queue[Message] = asyncio.Queue()
        self.writable = asyncio.Event()
        self.writable.set()
        self.gone = asyncio.Event()

    async def receive(self) -> Message:
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        await self.sent.put(message)
        await self.writable.wait()

    async def next(self) -> Message:
        async with asyncio.timeout(WAIT):
            return await self.sent.get()

    async def body(self) -> Message:
        message = await self.next()
        assert message["type"] == "http.response.body", message
        return message


class Running:
    """A stream in a memory broker and one response following it from the start."""

    def __init__(self, broker: MemoryBroker, stream_id: str, subscription: Watched) -> None:
        self.broker = broker
        self.stream_id = stream_id
        self.subscription = subscription
        self.registry = OpenStreams()
        self.peer = Peer()
        self.task: asyncio.Task[None] | None = None

    def start(
        self,
        *,
        heartbeat: float = 60.0,
        retry_ms: int | None = 1500,
        prelude: bytes = b"",
        on_disconnect: OnDisconnect | None = None,
    ) -> None:
        response = EventStreamResponse(
            self.subscription,
            registry=self.registry,
            heartbeat=heartbeat,
            retry_ms=retry_ms,
            prelude=prelude,
            headers={"x-stream-id": self.stream_id},
            on_disconnect=on_disconnect,
        )
        scope = {"type": "http", "method": "GET", "path": "/"}
        self.task = asyncio.create_task(response(scope, self.peer.receive, self.peer.send))

    async def opened(self) -> bytes:
        """The head, then the opening write; returns what that write carried."""
        head = await self.peer.next()
        assert head["type"] == "http.response.start" and head["status"] == 200
        first = await self.peer.body()
        assert first["more_body"] is True
        body: bytes = first["body"]
        return body

    async def ended(self) -> None:
        assert self.task is not None
        async with asyncio.timeout(WAIT):
            await self.task


async def running(*pending: str) -> Running:
    """A new stream with ``pending`` delta events already appended, and a listener on it."""
    broker = MemoryBroker()
    stream_id = await broker.create(OWNER)
    for text in pending:
        await broker.append(stream_id, "delta", json.dumps({"text": text}))
    subscription = Watched(await broker.subscribe(stream_id, OWNER, 0))
    return Running(broker, stream_id, subscription)


def texts(body: bytes) -> list[str]:
    return [json.loads(event.data)["text"] for event in sse.Parser().feed(body)]


@pytest.mark.parametrize("retry_ms", [1500, None])
async def test_the_head_then_retry_and_prelude_in_one_write(retry_ms: int | None) -> None:
    stream = await running()
    stream.start(retry_ms=retry_ms, prelude=b": hello\n\n")
    head = await stream.peer.next()
    headers = {name.decode(): value.decode() for name, value in head["headers"]}
    assert headers == {
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-cache",
        "x-accel-buffering": "no",
        "x-stream-id": stream.stream_id,
    }
    first = await stream.peer.body()
    retry = sse.encode_retry(retry_ms) if retry_ms is not None else b""
    assert first["body"] == retry + b": hello\n\n" and first["more_body"] is True
    await stream.broker.finish(stream.stream_id, "{}")
    await stream.ended()


async def test_entries_pending_at_the_start_leave_in_one_write() -> None:
    stream = await running("a", "b", "c")
    stream.start()
    await stream.opened()
    caught_up = await stream.peer.body()
    assert texts(caught_up["body"]) == ["a", "b", "c"]
    assert [e.id for e in sse.Parser().feed(caught_up["body"])] == ["1", "2", "3"]


async def test_a_listener_held_up_catches_up_in_one_write() -> None:
    stream = await running()
    stream.start()
    await stream.opened()
    stream.peer.writable.clear()  # the client stops reading: the next write waits
    await stream.broker.append(stream.stream_id, "delta", json.dumps({"text": "1"}))
    assert texts((await stream.peer.body())["body"]) == ["1"]
    for text in "2345":  # appended while that write is held
        await stream.broker.append(stream.stream_id, "delta", json.dumps({"text": text}))
    stream.peer.writable.set()
    assert texts((await stream.peer.body())["body"]) == ["2", "3", "4", "5"]


async def test_the_end_of_the_stream_ends_the_body_and_closes_the_subscription() -> None:
    stream = await running("a")
    stream.start()
    await stream.opened()
    await stream.broker.finish(stream.stream_id, json.dumps({"finish_reason": "stop"}))
    written = b""
    while (message := await stream.peer.body())["more_body"]:
        written += message["body"]
    assert message["body"] == b""
    assert [e.event for e in sse.Parser().feed(written)] == ["delta", "end"]
    await stream.ended()
    assert stream.subscription.closed.is_set() and len(stream.registry) == 0


async def test_an_idle_stream_gets_a_ping_every_heartbeat() -> None:
    stream = await running()
    loop = asyncio.get_running_loop()
    started_at = loop.time()
    stream.start(heartbeat=0.05)
    await stream.opened()
    assert (await stream.peer.body())["body"] == b": ping\n\n"
    assert loop.time() - started_at >= 0.05, "a ping before a heartbeat of silence"
    assert (await stream.peer.body())["body"] == b": ping\n\n"  # and again, while idle
    await stream.broker.finish(stream.stream_id, "{}")
    await stream.ended()


async def test_a_client_leaving_runs_on_disconnect_before_the_subscription_closes() -> None:
    stream = await running()
    called, release = asyncio.Event(), asyncio.Event()

    async def stop_generating() -> None:
        called.set()
        await release.wait()  # a Stop on its way to the producer

    stream.start(on_disconnect=stop_generating)
    await stream.opened()
    assert len(stream.registry) == 1
    stream.peer.gone.set()
    async with asyncio.timeout(WAIT):
        await called.wait()
    assert not stream.subscription.closed.is_set(), "closed before the Stop was delivered"
    release.set()
    await stream.ended()
    assert stream.subscription.closed.is_set() and len(stream.registry) == 0
    assert stream.peer.sent.empty(), "wrote to a client that left"


async def test_shutdown_ends_every_open_body_cleanly() -> None:
    streams = [await running(), await running()]
    left: list[str] = []
    registry = streams[0].registry
    for stream in streams:
        stream.registry = registry  # one server: one registry of open responses

        async def leave(stream_id: str = stream.stream_id) -> None:
            left.append(stream_id)

        stream.start(on_disconnect=leave)
        await stream.opened()
    assert len(registry) == 2
    registry.close_all()
    for stream in streams:
        last = await stream.peer.body()
        assert last == {"type": "http.response.body", "body": b"", "more_body": False}
        await stream.ended()
        assert stream.subscription.closed.is_set()
    assert len(registry) == 0 and left == [], "shutdown is not the client leaving"
