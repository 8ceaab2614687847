"""``GET /metrics`` over a real server: each family moves when its event happens.

Every test scrapes before and after the event and compares, so the numbers of
other requests (the scrapes themselves included) never matter.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import httpx
import prometheus_client
import pytest

from conftest import RunningServer, ServerFactory, read_events
from helpers import JSON, add_user, ask, follow, last
from observe.scrape import Samples, scrape, value
from tcp_proxy import TcpProxy
from upstream.control import Upstream
from upstream.fixtures import Gateway, answer

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

FAST = {"simulate": {"tokens_per_second": 1000}}
STALLED = {"simulate": {"tokens_per_second": 1000, "stall_after_tokens": 2}}


async def wait_for(client: httpx.AsyncClient, name: str, at_least: float, **labels: str) -> Samples:
    """Scrape until the sample reaches ``at_least`` (what ends an answer runs after ``end``)."""
    async with asyncio.timeout(10):
        while True:
            samples = await scrape(client)
            if value(samples, name, **labels) >= at_least:
                return samples
            await asyncio.sleep(0.02)


async def test_an_answer_moves_the_answer_families(client: httpx.AsyncClient) -> None:
    before = await scrape(client)
    started = await ask(client, "hello metrics", assistant="echo", options=FAST)
    events = await follow(client, started["events_url"])
    after = await wait_for(
        client,
        "typewriter_answers_ended_total",
        value(before, "typewriter_answers_ended_total", assistant="echo", finish_reason="stop") + 1,
        assistant="echo",
        finish_reason="stop",
    )

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("typewriter_answers_started_total", assistant="echo") == 1
    assert value(after, "typewriter_answers_running") == 0
    assert moved("typewriter_first_token_seconds_count") == 1
    assert moved("typewriter_gateway_first_token_seconds_count") == 1
    assert moved("typewriter_first_token_seconds_sum") >= moved(
        "typewriter_gateway_first_token_seconds_sum"
    )
    assert moved("typewriter_events_sent_total") == len(events)
    wire = sum(len(e.data) for e in events)
    assert moved("typewriter_sent_bytes_total") > wire
    assert value(after, "typewriter_listeners_open") == 0
    # On SQLite a new conversation's question is group-committed: its transaction is a
    # batch (``new_turns``), as the answers' ends are (``finish_many``).
    assert moved("typewriter_store_operation_seconds_count", operation="new_turns") == 1
    assert moved("typewriter_store_operation_seconds_count", operation="finish") == 1
    assert moved("typewriter_store_operation_seconds_count", operation="finish_many") == 1
    assert moved("typewriter_broker_operation_seconds_count", operation="create") == 1
    assert moved("typewriter_broker_operation_seconds_count", operation="finish") == 1
    assert moved("typewriter_resumes_total") == 0


async def test_a_stop_is_timed_until_the_model_is_closed_and_listeners_are_counted(
    client: httpx.AsyncClient,
) -> None:
    before = await scrape(client)
    started = await ask(client, "stop me, please", assistant="echo", options=STALLED)
    async with client.stream("GET", started["events_url"]) as response:
        shown = await read_events(response, limit=3)  # start and two deltas, then the stall
        assert [e.event for e in shown] == ["start", "delta", "delta"]
        during = await scrape(client)
        assert value(during, "typewriter_listeners_open") == 1
        assert value(during, "typewriter_answers_running") == 1
        stop = await client.post(f"/v1/streams/{started['stream_id']}/cancel")
        assert stop.status_code == 202
        rest = await read_events(response)
        assert rest[-1].event == "end"
    cancelled = {"assistant": "echo", "finish_reason": "cancelled"}
    after = await wait_for(client, "typewriter_answers_ended_total", 1, **cancelled)
    stops = value(after, "typewriter_stop_to_upstream_closed_seconds_count")
    assert stops - value(before, "typewriter_stop_to_upstream_closed_seconds_count") == 1
    assert value(after, "typewriter_answers_running") == 0
    assert value(after, "typewriter_listeners_open") == 0
    assert value(after, "typewriter_stop_to_upstream_closed_seconds_sum") < 1.0
    assert value(after, "typewriter_broker_operation_seconds_count", operation="cancel") == 1


async def test_closing_a_direct_answer_is_a_stop(client: httpx.AsyncClient) -> None:
    body = {"message": "direct", "assistant": "echo", "options": STALLED}
    headers = {**JSON, "accept": "text/event-stream"}
    async with client.stream("POST", "/v1/chat", json=body, headers=headers) as response:
        assert response.status_code == 200
        await read_events(response, limit=2)
    cancelled = {"assistant": "echo", "finish_reason": "cancelled"}
    after = await wait_for(client, "typewriter_answers_ended_total", 1, **cancelled)
    assert value(after, "typewriter_stop_to_upstream_closed_seconds_count") == 1


async def test_a_resume_is_counted(client: httpx.AsyncClient) -> None:
    started = await ask(client, "resume me", assistant="echo", options=FAST)
    await follow(client, started["events_url"])
    before = await scrape(client)
    url = started["events_url"]
    replay = await follow(client, url, last_event_id="2")
    assert replay[0].id == "3"
    await follow(client, url, last_event_id="")  # empty: from the start, not a resume
    await follow(client, f"{url}?last_event_id=1")  # a first connect that resumes
    after = await scrape(client)
    assert value(after, "typewriter_resumes_total") - value(before, "typewriter_resumes_total") == 2


async def test_refusals_are_counted_by_status_and_code(make_server: ServerFactory) -> None:
    server = make_server(requests_per_minute=4, max_body_bytes=200, limit_loopback=True)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        before = await scrape(client)
        assert (await client.post("/v1/chat", json={"message": "x" * 300})).status_code == 413
        assert (await client.post("/v1/chat", json={"message": 42})).status_code == 422
        huge = {"x-filler": "y" * 40_000}
        assert (await client.get("/v1/assistants", headers=huge)).status_code == 431
        assert (await client.get("/v1/nothing-here")).status_code == 404
        statuses = [(await client.get("/v1/assistants")).status_code for _ in range(4)]
        assert statuses[-1] == 429
        after = await scrape(client)

    def moved(status: str, code: str) -> float:
        labels = {"status": status, "code": code}
        return value(after, "typewriter_refusals_total", **labels) - value(
            before, "typewriter_refusals_total", **labels
        )

    assert moved("413", "payload_too_large") == 1
    assert moved("422", "invalid_field") == 1
    assert moved("431", "headers_too_large") == 1
    assert moved("404", "not_found") == 1
    assert moved("429", "rate_limited") >= 1


@pytest.fixture
def keyed_dir(tmp_path: Path) -> tuple[Path, str]:
    return tmp_path, add_user(tmp_path, "alice")


async def test_with_auth_on_metrics_need_their_own_token_even_from_loopback(
    make_server: ServerFactory, keyed_dir: tuple[Path, str]
) -> None:
    data_dir, key = keyed_dir
    server = make_server(data_dir=data_dir, metrics_token="scrape-secret")
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        for headers in ({}, {"authorization": f"Bearer {key}"}, {"authorization": "Bearer no"}):
            refused = await client.get("/metrics", headers=headers)
            assert refused.status_code == 401
            assert refused.json()["error"]["code"] == "unauthorized"
            assert refused.headers["www-authenticate"].startswith("Bearer")
        samples = await scrape(client, authorization="Bearer scrape-secret")
        assert value(samples, "typewriter_refusals_total", status="401", code="unauthorized") == 3
        assert (await client.post("/v1/chat", json={"message": "hi"})).status_code == 401
        samples = await scrape(client, authorization="Bearer scrape-secret")
        missing = {"status": "401", "code": "missing_api_key"}
        assert value(samples, "typewriter_refusals_total", **missing) == 1


async def test_with_auth_on_and_no_token_metrics_are_refused(
    make_server: ServerFactory, keyed_dir: tuple[Path, str]
) -> None:
    data_dir, key = keyed_dir
    server = make_server(data_dir=data_dir)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        for headers in ({}, {"authorization": f"Bearer {key}"}):
            refused = await client.get("/metrics", headers=headers)
            assert refused.status_code == 403
            error = refused.json()["error"]
            assert error["code"] == "forbidden" and "metrics_token" in error["message"]


async def test_a_broker_outage_counts_broker_errors(
    make_server: ServerFactory, redis_proxy: TcpProxy
) -> None:
    server = make_server(broker=f"redis://{redis_proxy.address}/0")
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        started = await ask(client, "before", assistant="echo", options=FAST)
        await follow(client, started["events_url"])
        redis_proxy.cut()
        try:
            refused = await client.post("/v1/chat", json={"message": "hi", "assistant": "echo"})
            assert refused.status_code == 503
        finally:
            redis_proxy.restore()
        samples = await scrape(client)
    assert value(samples, "typewriter_broker_errors_total", operation="create") == 1
    assert value(samples, "typewriter_refusals_total", status="503", code="broker_unavailable") == 1


async def test_a_store_outage_counts_store_errors(
    make_server: ServerFactory, postgres_url: str
) -> None:
    address = postgres_url.split("@", 1)[1].split("/", 1)[0]
    host, port = address.rsplit(":", 1)
    proxy = TcpProxy(host, int(port))
    try:
        server = make_server(database_url=postgres_url.replace(address, proxy.address))
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            assert (await client.get("/v1/conversations")).status_code == 200
            proxy.cut()
            down = await client.get("/v1/conversations")
            assert down.status_code == 503
            proxy.restore()
            samples = await scrape(client)
        server.stop()
    finally:
        proxy.close()
    listed = {"operation": "list_conversations"}
    assert value(samples, "typewriter_store_operation_seconds_count", **listed) == 2
    assert value(samples, "typewriter_store_errors_total", **listed) == 1


def test_each_gateway_has_its_own_registry(make_server: ServerFactory) -> None:
    first, second = make_server(), make_server()
    assert first.gateway.metrics.registry is not second.gateway.metrics.registry
    first.gateway.metrics.refused(429, "rate_limited")
    assert "rate_limited" not in second.gateway.metrics.render().decode()
    global_names = prometheus_client.REGISTRY._names_to_collectors  # noqa: SLF001
    assert not [name for name in global_names if name.startswith("typewriter_")]


async def test_upstream_families_move_with_real_upstreams(
    make_upstream: Callable[[], Upstream], upstream: Upstream, gateway: Gateway
) -> None:
    """A closed port first, a real upstream second: the failed attempt, the failover and each
    upstream's state are counted. Then one upstream that fails once (500) and answers the
    retry, one that rejects the request (400), one that breaks mid-answer."""
    gone = make_upstream()
    closed = gone.base_url
    gone.stop()
    server = gateway(closed, upstream)
    events = await answer(server)
    assert last(events, "end")["finish_reason"] == "stop"
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        samples = await scrape(client)
    assert value(samples, "typewriter_upstream_requests_total", upstream="u0") == 1
    assert value(samples, "typewriter_upstream_requests_total", upstream="u1") == 1
    assert value(samples, "typewriter_upstream_errors_total", upstream="u0", kind="connect") == 1
    failover = {"from_upstream": "u0", "to_upstream": "u1"}
    assert value(samples, "typewriter_upstream_failovers_total", **failover) == 1
    assert value(samples, "typewriter_upstream_up", upstream="u0") == 0
    assert value(samples, "typewriter_upstream_up", upstream="u1") == 1

    server = gateway(upstream)
    upstream.script({"status": 500}, {}, {"status": 400}, {"drop_after_tokens": 2})
    assert last(await answer(server), "end")["finish_reason"] == "stop"
    for _ in range(2):
        assert last(await answer(server), "end")["finish_reason"] == "error"
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        samples = await scrape(client)
    assert value(samples, "typewriter_upstream_requests_total", upstream="u0") == 4
    assert value(samples, "typewriter_upstream_retries_total", upstream="u0") == 1
    for kind in ("server_error", "rejected", "mid_answer"):
        assert value(samples, "typewriter_upstream_errors_total", upstream="u0", kind=kind) == 1
    assert value(samples, "typewriter_upstream_up", upstream="u0") == 1


async def test_metrics_are_open_with_auth_off(server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        samples = await scrape(client)
    assert ("typewriter_answers_running", frozenset()) in samples
