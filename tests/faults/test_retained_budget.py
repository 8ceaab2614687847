"""One user cannot make a server hold unbounded memory in retained streams.

Each server is a real ``typewriter serve`` process with the in-process broker and
users made by the real CLI; what the broker counts is read from ``/metrics``
(``typewriter_retained_bytes``), what a user sees from the HTTP answers, and what
is stored from the conversation. Budgets are small so that a few answers of a few
thousand characters cross them.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from helpers import add_user, ask, follow, last, text_of
from replicas import Replica, Replicas

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

KIB = 1024
MIB = 1024 * KIB
METRICS_TOKEN = "metrics-secret-for-the-budget-tests"
FAST = {"simulate": {"tokens_per_second": 100_000}}
QUESTION = "".join(f"{i:04d}" for i in range(1000))  # echo: 1,000 pieces, ~370 KB held
LONG = QUESTION * 8  # the longest question allowed (32,000 characters), ~3 MB held


@dataclass
class Users:
    data_dir: Path
    keys: dict[str, str]


@pytest.fixture(scope="module")
def users(tmp_path_factory: pytest.TempPathFactory) -> Users:
    data_dir = tmp_path_factory.mktemp("budget")
    return Users(data_dir, {name: add_user(data_dir, name) for name in ("alice", "bob", "carol")})


@pytest.fixture
async def serve(users: Users) -> AsyncIterator[Any]:
    started = Replicas(users.data_dir)

    async def start(**settings: object) -> Replica:
        return await started.start(
            metrics_token=METRICS_TOKEN, requests_per_minute=100_000, **settings
        )

    try:
        yield start
    finally:
        started.stop_all()


def client(replica: Replica, users: Users, name: str) -> httpx.AsyncClient:
    headers = {"authorization": f"Bearer {users.keys[name]}"}
    return httpx.AsyncClient(base_url=replica.url, headers=headers, timeout=30)


async def metric(replica: Replica, name: str) -> float:
    async with httpx.AsyncClient(base_url=replica.url) as http:
        response = await http.get("/metrics", headers={"authorization": f"Bearer {METRICS_TOKEN}"})
    assert response.status_code == 200, response.text
    found = re.search(rf"^{name} (\S+)$", response.text, re.MULTILINE)
    assert found, f"no {name} in /metrics"
    return float(found.group(1))


async def answered(http: httpx.AsyncClient, question: str = QUESTION) -> dict[str, Any]:
    """Ask (echo, fast) and read the answer's body to its end: it is finished when this
    returns. Read as bytes: parsing thousands of events would be most of the test's time."""
    started = await ask(http, question, assistant="echo", options=FAST)
    body = b""
    async with http.stream("GET", started["events_url"]) as response:
        assert response.status_code == 200
        async for chunk in response.aiter_bytes():
            body += chunk
    assert b'"finish_reason":"stop"' in body[-300:], body[-300:]
    return started


async def refused(http: httpx.AsyncClient, url: str, **headers: str) -> dict[str, Any]:
    response = await http.get(url, headers=headers)
    assert response.status_code == 410, (response.status_code, response.text[:300])
    body: dict[str, Any] = response.json()
    return body


async def test_a_user_flooding_answers_stays_within_its_share_and_others_keep_theirs(
    serve: Any, users: Users
) -> None:
    replica = await serve(max_retained_bytes=64 * MIB, max_retained_bytes_per_user=1 * MIB)
    async with client(replica, users, "alice") as alice, client(replica, users, "bob") as bob:
        bobs = await answered(bob)
        bob_bytes = await metric(replica, "typewriter_retained_bytes")
        alices = [await answered(alice) for _ in range(12)]  # ~4.4 MB: four shares

        held = await metric(replica, "typewriter_retained_bytes")
        assert held - bob_bytes <= 1 * MIB, held
        assert await metric(replica, "typewriter_retained_dropped_total") >= 8
        # The oldest answers are gone as expired ones are, for a reader and a resume alike.
        first = alices[0]["events_url"]
        assert (await refused(alice, first))["error"]["code"] == "stream_expired"
        resumed = await refused(alice, first, **{"last-event-id": "10"})
        assert resumed["error"]["code"] == "stream_expired"
        # The newest are whole; so is the other user's, older than all of them.
        assert text_of(await follow(alice, alices[-1]["events_url"])) == QUESTION
        assert text_of(await follow(bob, bobs["events_url"])) == QUESTION
        # Only the stream is gone: the stored answer is whole.
        stored = (await alice.get(f"/v1/conversations/{alices[0]['conversation_id']}")).json()
        assert stored["messages"][-1]["text"] == QUESTION


async def test_a_running_answer_is_never_dropped(serve: Any, users: Users) -> None:
    # The share leaves room for a long answer while it runs (~3 MB) beside the stalled one
    # and the channel's window, which the stalled answer at its head keeps full.
    replica = await serve(max_retained_bytes=64 * MIB, max_retained_bytes_per_user=6 * MIB)
    async with client(replica, users, "alice") as alice:
        stalled = {"simulate": {"tokens_per_second": 100_000, "stall_after_tokens": 500}}
        running = await ask(alice, QUESTION, assistant="echo", options=stalled)
        await follow(alice, running["events_url"], limit=501)  # start and 500 pieces
        finished = [await answered(alice, LONG) for _ in range(3)]  # ~9 MB

        assert await metric(replica, "typewriter_retained_dropped_total") >= 1

        assert (await refused(alice, finished[0]["events_url"]))["error"]["code"] == (
            "stream_expired"
        )
        stop = await alice.post(f"/v1/streams/{running['stream_id']}/cancel")
        assert stop.status_code in (200, 202, 204), stop.text
        events = await follow(alice, running["events_url"])  # from its first event
        assert text_of(events) == QUESTION[:2000]
        assert last(events, "end")["finish_reason"] == "cancelled"


async def test_an_answer_that_alone_fills_the_share_ends_length_with_what_was_shown(
    serve: Any, users: Users
) -> None:
    replica = await serve(max_retained_bytes=64 * MIB, max_retained_bytes_per_user=256 * KIB)
    async with client(replica, users, "alice") as alice:
        started = await ask(alice, QUESTION, assistant="echo", options=FAST)
        events = await follow(alice, started["events_url"])

        shown = text_of(events)
        assert 1000 < len(shown) < len(QUESTION) and QUESTION.startswith(shown)
        assert last(events, "end")["finish_reason"] == "length"
        assert not [e for e in events if e.event == "error"]
        stored = (await alice.get(f"/v1/conversations/{started['conversation_id']}")).json()
        answer = stored["messages"][-1]
        assert (answer["text"], answer["finish_reason"]) == (shown, "length")
        assert await metric(replica, "typewriter_retained_bytes") <= 256 * KIB


async def test_new_asks_are_refused_while_running_answers_fill_the_share_or_the_total(
    serve: Any, users: Users
) -> None:
    replica = await serve(max_retained_bytes=12 * KIB, max_retained_bytes_per_user=8 * KIB)
    stalled = {"simulate": {"tokens_per_second": 100_000, "stall_after_tokens": 1}}
    async with (
        client(replica, users, "alice") as alice,
        client(replica, users, "bob") as bob,
        client(replica, users, "carol") as carol,
    ):
        running = await ask(alice, "abcdefgh", assistant="echo", options=stalled)
        await follow(alice, running["events_url"], limit=2)

        again = await alice.post("/v1/chat", json={"message": "more", "assistant": "echo"})
        assert again.status_code == 429, again.text
        assert again.json()["error"]["code"] == "retained_share_full"
        assert again.headers["retry-after"] == "2"
        bobs = await ask(bob, "abcdefgh", assistant="echo", options=stalled)
        await follow(bob, bobs["events_url"], limit=2)
        full = await carol.post("/v1/chat", json={"message": "hello", "assistant": "echo"})
        assert full.status_code == 503, full.text
        assert full.json()["error"]["code"] == "retained_bytes_full"
        assert full.headers["retry-after"] == "2"
        # Nothing was recorded for the refused asks.
        listed = (await carol.get("/v1/conversations")).json()
        assert listed["data"] == []

        await alice.post(f"/v1/streams/{running['stream_id']}/cancel")
        await follow(alice, running["events_url"])  # ended: droppable, no longer pinned
        accepted = await carol.post("/v1/chat", json={"message": "hello", "assistant": "echo"})
        assert accepted.status_code == 202, accepted.text
