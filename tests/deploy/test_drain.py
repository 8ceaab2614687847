"""A graceful stop, as a deploy does it: real ``typewriter serve`` processes behind the nginx
of docs/deploy.md, sent real signals.

The first SIGTERM drains: running answers stream on through nginx for up to
``drain_timeout``, new asks get ``503 draining`` and ``/readyz`` says 503, then
the answers still running end ``interrupted`` (their text stored, then ``end``)
and the process exits as soon as the last one ended. A second signal stops at
once. The simulated model's ``tokens_per_second`` makes answers as long as each
case needs.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import read_events
from helpers import ask, data_of, follow, last, text_of
from nginx_proxy import Nginx, start_nginx
from replicas import Replica, Replicas
from typewriter import sse

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

SSE = {"accept": "text/event-stream"}
Deploy = Callable[..., Awaitable[tuple[Replica, Nginx]]]


def pieces(count: int) -> str:
    """An echo answer of ``count`` pieces of 4 characters, each one distinct."""
    return "".join(f"{i:03d}," for i in range(count))


def echo(message: str, tokens_per_second: float, **fields: Any) -> dict[str, Any]:
    simulate = {"tokens_per_second": tokens_per_second}
    return {"message": message, "assistant": "echo", "options": {"simulate": simulate}, **fields}


@pytest.fixture
def deploy(replicas: Replicas, tmp_path: Path) -> Iterator[Deploy]:
    """One replica behind nginx: both upstream lines of the documented block name it."""
    proxies: list[Nginx] = []

    async def start(**settings: object) -> tuple[Replica, Nginx]:
        replica = await replicas.start(**settings)
        address = f"127.0.0.1:{replica.port}"
        proxy = start_nginx(tmp_path / f"nginx{len(proxies)}", [address, address])
        proxies.append(proxy)
        return replica, proxy

    yield start
    for proxy in proxies:
        proxy.stop()


async def exited(replica: Replica, within: float) -> float:
    """Wait for the process to end; when it did (monotonic clock)."""
    try:
        await asyncio.to_thread(replica.process.wait, within)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"still running {within} s later:\n{replica.output()}") from None
    return time.monotonic()


async def until_draining(http: httpx.AsyncClient) -> httpx.Response:
    """``/readyz`` once it says 503 (the signal is handled at the server's next tick)."""
    async with asyncio.timeout(5):
        while (ready := await http.get("/readyz")).status_code == 200:
            await asyncio.sleep(0.02)
    return ready


async def rest_of(response: httpx.Response, within: float) -> list[tuple[float, sse.Event]]:
    """The remaining events of an open response, each with its arrival time."""
    timed = []
    async with asyncio.timeout(within):
        while events := await read_events(response, limit=1):
            timed.append((time.monotonic(), events[0]))
    return timed


@pytest.fixture
async def http() -> AsyncIterator[Callable[[str], httpx.AsyncClient]]:
    clients: list[httpx.AsyncClient] = []

    def make(url: str) -> httpx.AsyncClient:
        clients.append(httpx.AsyncClient(base_url=url, timeout=30))
        return clients[-1]

    yield make
    for client in clients:
        await client.aclose()


async def test_answers_running_at_sigterm_stream_on_and_the_process_exits_after_the_last(
    deploy: Deploy, http: Callable[[str], httpx.AsyncClient]
) -> None:
    """(a) direct and detached answers finish normally through nginx; (e) exit right after."""
    replica, proxy = await deploy(drain_timeout=30)
    client = http(proxy.url)
    direct_message, detached_message = pieces(40), pieces(30)  # 2 s and 1.5 s at 20 a second
    detached = await ask(client, **echo(detached_message, 20))
    async with (
        client.stream("POST", "/v1/chat", json=echo(direct_message, 20), headers=SSE) as direct,
        client.stream("GET", detached["events_url"]) as following,
    ):
        head = await read_events(direct, limit=3)  # start and two deltas
        followed_head = await read_events(following, limit=2)
        signalled = time.monotonic()
        replica.process.send_signal(signal.SIGTERM)
        rest = await rest_of(direct, within=15)
        followed = followed_head + [event for _, event in await rest_of(following, within=15)]
    ended_at = rest[-1][0]
    exited_at = await exited(replica, within=15)

    events = head + [event for _, event in rest]
    assert text_of(events) == direct_message
    assert last(events, "end")["finish_reason"] == "stop"
    after_signal = [at for at, event in rest if event.event == "delta"]
    assert len(after_signal) >= 30
    assert after_signal[-1] - after_signal[0] >= 0.75, "the deltas after SIGTERM came in a lump"
    assert text_of(followed) == detached_message
    assert last(followed, "end")["finish_reason"] == "stop"
    assert replica.process.returncode == 0
    # The drain ended with the last answer: nowhere near the 30 s it was allowed.
    assert exited_at - ended_at < 5, f"exited {exited_at - ended_at:.1f} s after the last end"
    assert exited_at - signalled < 10


async def test_an_answer_longer_than_drain_timeout_ends_interrupted_and_is_stored(
    deploy: Deploy, replicas: Replicas, http: Callable[[str], httpx.AsyncClient]
) -> None:
    """(b) it streams on for ``drain_timeout``, then ``error interrupted`` and ``end``, and its
    text is in the conversation a restarted server reads; an OpenAI stream is told too."""
    drain_timeout = 1.5
    replica, proxy = await deploy(drain_timeout=drain_timeout)
    client = http(proxy.url)
    message = pieces(100)  # 10 s at 10 a second
    completion = {  # the OpenAI routes take no pace: 1,000 pieces at echo's 50 a second
        "model": "echo",
        "stream": True,
        "messages": [{"role": "user", "content": pieces(1000)}],
    }
    async with (
        client.stream("POST", "/v1/chat", json=echo(message, 10), headers=SSE) as direct,
        client.stream("POST", "/v1/chat/completions", json=completion) as openai_stream,
    ):
        head = await read_events(direct, limit=3)
        await read_events(openai_stream, limit=2)
        signalled = time.monotonic()
        replica.process.send_signal(signal.SIGTERM)
        rest = await rest_of(direct, within=15)
        openai_rest = [event.data for _, event in await rest_of(openai_stream, within=15)]
    await exited(replica, within=15)

    events = head + [event for _, event in rest]
    text = text_of(events)
    assert last(events, "error")["code"] == "interrupted"
    assert last(events, "end")["finish_reason"] == "error"
    assert [event.event for event in events[-2:]] == ["error", "end"]
    assert message.startswith(text)
    assert len(text_of(head)) < len(text) < len(message)
    ended_at = rest[-1][0]
    assert drain_timeout - 0.2 <= ended_at - signalled < drain_timeout + 5
    deltas_after = [at for at, event in rest if event.event == "delta"]
    assert len(deltas_after) >= 5, "the answer did not go on during the drain"
    assert openai_rest[-1] == "[DONE]"
    assert '"interrupted"' in openai_rest[-2]

    restarted = await replicas.start()
    conversation = data_of(head[0])["conversation_id"]
    stored = (await http(restarted.url).get(f"/v1/conversations/{conversation}")).json()
    answer = stored["messages"][-1]
    assert (answer["text"], answer["finish_reason"], answer["status"]) == (
        text,
        "error",
        "interrupted",
    )


async def test_while_draining_new_asks_are_refused_and_running_ones_still_reachable(
    deploy: Deploy, http: Callable[[str], httpx.AsyncClient]
) -> None:
    """(c) ``503 draining`` with ``Retry-After`` and ``/readyz`` 503 through nginx, while the
    running answer can still be followed and stopped; stopping it ends the drain."""
    replica, proxy = await deploy(drain_timeout=30)
    client = http(proxy.url)
    started = await ask(client, **echo(pieces(200), 10))  # 20 s
    await follow(client, started["events_url"], limit=3)
    replica.process.send_signal(signal.SIGTERM)

    ready = await until_draining(client)
    assert ready.status_code == 503
    assert ready.json()["checks"]["accepting"] is False
    refused = await client.post("/v1/chat", json={"message": "hello"})
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "draining"
    assert refused.headers["retry-after"] == "1"
    openai_refused = await client.post(
        "/v1/chat/completions",
        json={"model": "echo", "messages": [{"role": "user", "content": "hello"}]},
    )
    assert openai_refused.status_code == 503
    assert openai_refused.json()["error"]["code"] == "draining"
    assert openai_refused.headers["retry-after"] == "1"
    assert (await client.get("/healthz")).status_code == 200

    resumed = await follow(client, started["events_url"], last_event_id="2", limit=3)
    assert [event.id for event in resumed] == ["3", "4", "5"]
    stop = await client.post(f"/v1/streams/{started['stream_id']}/cancel")
    assert stop.status_code == 202
    stopped_at = time.monotonic()
    ending = await follow(client, started["events_url"], last_event_id="5")
    assert last(ending, "end")["finish_reason"] == "cancelled"
    assert await exited(replica, within=15) - stopped_at < 5


async def test_a_second_sigterm_ends_the_running_answers_at_once(
    deploy: Deploy, http: Callable[[str], httpx.AsyncClient]
) -> None:
    """(d) an answer that would hold the drain for 30 s does not hold the second signal: it
    ends ``interrupted`` (its listener gets ``end``) and the process exits."""
    replica, proxy = await deploy(drain_timeout=30)
    client = http(proxy.url)
    stalled = echo(pieces(20), 20)
    stalled["options"]["simulate"]["stall_after_tokens"] = 2  # never ends by itself
    async with client.stream("POST", "/v1/chat", json=stalled, headers=SSE) as direct:
        head = await read_events(direct, limit=3)
        replica.process.send_signal(signal.SIGTERM)
        ready = await until_draining(client)
        assert (ready.status_code, ready.json()["checks"]["accepting"]) == (503, False)
        await asyncio.sleep(0.5)
        assert replica.process.poll() is None, "the first SIGTERM did not drain"
        replica.process.send_signal(signal.SIGTERM)
        forced = time.monotonic()
        rest = [event for _, event in await rest_of(direct, within=5)]
    assert await exited(replica, within=15) - forced < 5
    assert text_of(head + rest) == pieces(2)
    assert last(rest, "error")["code"] == "interrupted"
    assert last(rest, "end")["finish_reason"] == "error"


async def test_a_listener_of_a_drained_replica_resumes_on_the_other(
    replicas: Replicas,
    redis_url: str,
    postgres_url: str,
    tmp_path: Path,
    http: Callable[[str], httpx.AsyncClient],
) -> None:
    """(f) Redis broker, two replicas. A listener on the stopped replica follows an answer of
    the other: it is served on while the stopped replica's own answer drains, then its
    response ends cleanly (no ``end``) and it resumes through nginx on the other replica."""
    generating, draining = await asyncio.gather(
        *(replicas.start(broker=redis_url, database_url=postgres_url) for _ in range(2))
    )
    addresses = [f"127.0.0.1:{replica.port}" for replica in (generating, draining)]
    proxy = start_nginx(tmp_path / "nginx", addresses)
    try:
        message, own_message = pieces(120), pieces(40)  # 6 s and 2 s at 20 a second
        started = await ask(http(generating.url), **echo(message, 20))
        own = await ask(http(draining.url), **echo(own_message, 20))
        async with http(draining.url).stream("GET", started["events_url"]) as response:
            shown = await read_events(response, limit=4)
            draining.process.send_signal(signal.SIGTERM)
            during = [event for _, event in await rest_of(response, within=15)]
        await exited(draining, within=10)
        resumed = await follow(http(proxy.url), started["events_url"], last_event_id=during[-1].id)
        own_events = await follow(http(proxy.url), own["events_url"])
    finally:
        proxy.stop()
    assert "end" not in [event.event for event in during]
    assert len(during) >= 20, "the listener was not served during the drain"
    shown += during + resumed
    assert text_of(shown) == message
    assert last(shown, "end")["finish_reason"] == "stop"
    assert [int(event.id or 0) for event in shown] == list(range(1, len(shown) + 1))
    assert text_of(own_events) == own_message
    assert last(own_events, "end")["finish_reason"] == "stop"


async def test_nginx_sends_asks_refused_by_a_draining_replica_to_the_other(
    replicas: Replicas,
    redis_url: str,
    postgres_url: str,
    tmp_path: Path,
    http: Callable[[str], httpx.AsyncClient],
) -> None:
    """With ``proxy_next_upstream … http_503 non_idempotent``, no client sees the refusal of
    a draining replica: nginx retries the ask on the other (the refusal recorded nothing),
    while the draining replica's own answer streams on to its end."""
    draining, other = await asyncio.gather(
        *(replicas.start(broker=redis_url, database_url=postgres_url) for _ in range(2))
    )
    addresses = [f"127.0.0.1:{replica.port}" for replica in (draining, other)]
    proxy = start_nginx(tmp_path / "nginx", addresses, variant="retry_draining")
    try:
        message = pieces(80)  # 4 s at 20 a second
        running = await ask(http(draining.url), **echo(message, 20))
        draining.process.send_signal(signal.SIGTERM)
        await until_draining(http(draining.url))
        client = http(proxy.url)
        answers = [await client.post("/v1/chat", json={"message": "hi"}) for _ in range(6)]
        ran_on = await follow(client, running["events_url"])
    finally:
        proxy.stop()
    assert [answer.status_code for answer in answers] == [202] * 6
    log = (proxy.root / "access.log").read_text().splitlines()
    retried = [line for line in log if line.startswith("POST /v1/chat ") and ", " in line]
    assert retried, "no ask went to the draining replica first"
    assert all(line.split()[2] == "202" for line in retried)
    assert text_of(ran_on) == message
    assert last(ran_on, "end")["finish_reason"] == "stop"
