"""Auth that was on never turns itself off while the server runs.

Each server is a real ``typewriter serve`` process, and users are added and
revoked with the real CLI while it runs, as an operator would. The ``auth``
setting: ``auto`` decides at start and only ever turns on; ``on`` needs keys
even before any user exists; ``off`` needs none and is refused on the network
without ``--insecure``.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from conftest import read_events
from helpers import add_user, typewriter_cli
from replicas import Replica, Replicas
from typewriter.api.auth import CACHE_SECONDS

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

# Past the key cache: whatever a running server believed before has been asked again.
PAST_THE_CACHE = CACHE_SECONDS + 1.5
# A revoked user's open stream ends within one cache period, plus this for the round trip.
MARGIN = 2.5
STALLED = {"simulate": {"stall_after_tokens": 1}}  # an answer that keeps its listeners open


def revoke(data_dir: Path, name: str) -> None:
    done = typewriter_cli("users", "revoke", name, "--data-dir", str(data_dir))
    assert done.returncode == 0, done.stderr


def signed(key: str | None) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"} if key else {}


async def status(replica: Replica, key: str | None, path: str = "/v1/conversations") -> int:
    async with httpx.AsyncClient(base_url=replica.url, headers=signed(key)) as client:
        return (await client.get(path)).status_code


async def assert_refused(replica: Replica, key: str | None, code: str) -> None:
    async with httpx.AsyncClient(base_url=replica.url, headers=signed(key)) as client:
        response = await client.get("/v1/conversations")
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == code


async def wait_for_status(replica: Replica, key: str | None, expected: int, within: float) -> None:
    deadline = time.monotonic() + within
    while (found := await status(replica, key)) != expected:
        assert time.monotonic() < deadline, f"still {found}, not {expected}, after {within} s"
        await asyncio.sleep(0.2)


async def test_revoking_the_last_user_leaves_the_server_locked(replicas: Replicas) -> None:
    alice = add_user(replicas.data_dir, "alice")
    server = await replicas.start()  # auth = auto, on: alice exists
    assert "auth: on, 1 user(s)" in server.output()
    assert await status(server, alice) == 200
    revoke(replicas.data_dir, "alice")
    await asyncio.sleep(PAST_THE_CACHE)
    await assert_refused(server, None, "missing_api_key")
    await assert_refused(server, alice, "invalid_api_key")


async def test_a_revoked_users_open_streams_end_and_cannot_reconnect(
    replicas: Replicas,
) -> None:
    alice = add_user(replicas.data_dir, "alice")
    server = await replicas.start()
    async with (
        httpx.AsyncClient(base_url=server.url, headers=signed(alice), timeout=30) as keyed,
        httpx.AsyncClient(base_url=server.url, timeout=30) as anonymous,
    ):
        asked = await keyed.post(
            "/v1/chat", json={"message": "never ends", "assistant": "echo", "options": STALLED}
        )
        assert asked.status_code == 202, asked.text
        by_ticket = asked.json()["events_url"]
        assert "?ticket=" in by_ticket
        async with (
            anonymous.stream("GET", by_ticket) as stream,
            keyed.stream("GET", "/v1/events") as channel,
        ):
            assert stream.status_code == channel.status_code == 200
            assert [e.event for e in await read_events(stream, limit=1)] == ["start"]
            assert [e.event for e in await read_events(channel, limit=1)] == ["connected"]
            revoke(replicas.data_dir, "alice")
            revoked_at = time.monotonic()
            async with asyncio.timeout(CACHE_SECONDS + MARGIN):
                rest = await asyncio.gather(read_events(stream), read_events(channel))
            ended_after = time.monotonic() - revoked_at
        assert all(e.event != "end" for events in rest for e in events), rest  # cut, not done
        assert ended_after <= CACHE_SECONDS + MARGIN
        again = await anonymous.get(by_ticket, headers={"last-event-id": "1"})
        assert again.status_code == 401 and again.json()["error"]["code"] == "invalid_ticket"
        for path in (asked.json()["events_url"].split("?")[0], "/v1/events"):
            with_key = await keyed.get(path)
            assert with_key.status_code == 401, (path, with_key.text)
            assert with_key.json()["error"]["code"] == "invalid_api_key"


async def test_auto_turns_on_with_the_first_user_and_stays_on(replicas: Replicas) -> None:
    server = await replicas.start()  # auth = auto, no user yet: the one local user
    assert await status(server, None) == 200
    async with (
        httpx.AsyncClient(base_url=server.url, timeout=30) as anonymous,
        anonymous.stream("GET", "/v1/events") as local_channel,
    ):
        assert [e.event for e in await read_events(local_channel, limit=1)] == ["connected"]
        alice = add_user(replicas.data_dir, "alice")
        await wait_for_status(server, None, 401, within=PAST_THE_CACHE)
        async with asyncio.timeout(CACHE_SECONDS + MARGIN):  # nobody is the local user now
            await read_events(local_channel)
    assert await status(server, alice) == 200
    revoke(replicas.data_dir, "alice")
    await asyncio.sleep(PAST_THE_CACHE)
    await assert_refused(server, None, "missing_api_key")
    await assert_refused(server, alice, "invalid_api_key")
    assert "auth: off for now" in server.output()


async def test_auth_on_without_users_refuses_every_v1_call(replicas: Replicas) -> None:
    # On the network without --insecure: with auth on, nobody gets in without a key.
    server = await replicas.start(auth="on", host="0.0.0.0")  # noqa: S104 - the point
    async with httpx.AsyncClient(base_url=server.url) as client:
        for path in ("/v1/conversations", "/v1/assistants", "/v1/models", "/v1/events"):
            response = await client.get(path)
            assert response.status_code == 401, (path, response.text)
            assert response.json()["error"]["code"] == "missing_api_key"
        for path in ("/healthz", "/"):
            assert (await client.get(path)).status_code == 200, path
    alice = add_user(replicas.data_dir, "alice")
    await wait_for_status(server, alice, 200, within=PAST_THE_CACHE)
    assert "auth: on, no user yet" in server.output()
    keyless = typewriter_cli("serve", "--port", "0", "--auth", "on", "--database-url", "none")
    assert keyless.returncode == 2 and "database_url = none" in keyless.stderr  # nobody, ever


async def test_auth_off_ignores_users_and_needs_insecure_on_the_network(
    replicas: Replicas,
) -> None:
    add_user(replicas.data_dir, "alice")
    server = await replicas.start(auth="off")
    assert await status(server, None) == 200
    async with httpx.AsyncClient(base_url=server.url) as client:
        asked = await client.post("/v1/chat", json={"message": "open", "assistant": "echo"})
    assert asked.status_code == 202 and "ticket" not in asked.json()["events_url"]
    assert "auth: off (auth = off)" in server.output()
    refused = typewriter_cli(
        "serve", "--host", "0.0.0.0", "--port", "0", "--auth", "off",  # noqa: S104 - the point
        "--data-dir", str(replicas.data_dir),
    )  # fmt: skip
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.count("\n") == 1 and "--insecure" in refused.stderr
    assert "auth = off" in refused.stderr
