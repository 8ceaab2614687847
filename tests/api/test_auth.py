"""Users, keys and tickets over real HTTP: who may read, stop and follow what.

Users are added with the real CLI before the server starts (auth turns on as
soon as one active user exists).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from conftest import RunningServer, ServerFactory, read_events
from helpers import add_user, follow, text_of, typewriter_cli
from replicas import Replicas

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


@pytest.fixture
def keyed(make_server: ServerFactory, tmp_path: Path) -> tuple[RunningServer, str, str]:
    alice, bob = add_user(tmp_path, "alice"), add_user(tmp_path, "bob")
    return make_server(data_dir=tmp_path), alice, bob


def as_user(server: RunningServer, key: str | None) -> httpx.AsyncClient:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.AsyncClient(base_url=server.url, headers=headers, timeout=30)


async def ask(client: httpx.AsyncClient, message: str, **fields: Any) -> dict[str, Any]:
    response = await client.post("/v1/chat", json={"message": message, **fields})
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


def test_users_cli_shows_a_key_once_and_keeps_only_its_hash(tmp_path: Path) -> None:
    key = add_user(tmp_path, "carol")
    listed = typewriter_cli("users", "list", "--data-dir", str(tmp_path))
    assert listed.returncode == 0 and "carol" in listed.stdout and "1 key(s)" in listed.stdout
    assert key not in listed.stdout
    assert key.encode() not in (tmp_path / "typewriter.db").read_bytes()
    again = typewriter_cli("users", "add", "carol", "--data-dir", str(tmp_path))
    assert again.returncode != 0 and "exists" in again.stderr
    assert typewriter_cli("users", "add", "../x", "--data-dir", str(tmp_path)).returncode != 0
    revoked = typewriter_cli("users", "revoke", "carol", "--data-dir", str(tmp_path))
    assert revoked.returncode == 0
    assert "revoked" in typewriter_cli("users", "list", "--data-dir", str(tmp_path)).stdout
    missing = typewriter_cli("users", "revoke", "carol", "--data-dir", str(tmp_path))
    assert missing.returncode != 0 and "no active user" in missing.stderr


def test_serve_refuses_the_network_without_keys_unless_insecure(tmp_path: Path) -> None:
    refused = typewriter_cli(
        "serve", "--host", "0.0.0.0", "--port", "0", "--data-dir", str(tmp_path)
    )
    assert refused.returncode == 2
    assert "without API keys" in refused.stderr and "--insecure" in refused.stderr


async def test_no_key_a_wrong_key_and_a_malformed_header_are_401(
    keyed: tuple[RunningServer, str, str],
) -> None:
    server, alice, _ = keyed
    for headers, code in [
        ({}, "missing_api_key"),
        ({"authorization": "Bearer tw_wrong"}, "invalid_api_key"),
        ({"authorization": f"Basic {alice}"}, "invalid_api_key"),
        ({"authorization": "Bearer"}, "invalid_api_key"),
    ]:
        async with httpx.AsyncClient(base_url=server.url, headers=headers) as client:
            response = await client.get("/v1/conversations")
        assert response.status_code == 401, headers
        assert response.json()["error"]["code"] == code
        assert response.headers["www-authenticate"].startswith("Bearer")
    async with httpx.AsyncClient(base_url=server.url) as client:
        assert (await client.get("/healthz")).status_code == 200  # ops stay open


async def test_another_users_stream_and_conversation_do_not_exist_for_them(
    keyed: tuple[RunningServer, str, str],
) -> None:
    server, alice, bob = keyed
    async with as_user(server, alice) as a, as_user(server, bob) as b:
        started = await ask(
            a, "mine", assistant="echo", options={"simulate": {"tokens_per_second": 5}}
        )
        stream, conversation = started["stream_id"], started["conversation_id"]
        for method, url in [
            ("GET", f"/v1/streams/{stream}/events"),
            ("POST", f"/v1/streams/{stream}/cancel"),
            ("GET", f"/v1/conversations/{conversation}"),
            ("DELETE", f"/v1/conversations/{conversation}"),
            ("POST", f"/v1/messages/{started['message_id']}/regenerate"),
        ]:
            theirs = await b.request(method, url, json={} if method == "POST" else None)
            unknown = await b.request(
                method,
                url.replace(stream, "st_nope").replace(conversation, "conv_nope"),
                json={} if method == "POST" else None,
            )
            assert theirs.status_code == 404, (method, url, theirs.text)
            assert unknown.status_code == 404
        assert (await b.get("/v1/conversations")).json()["data"] == []
        await a.post(f"/v1/streams/{stream}/cancel")
        assert text_of(await follow(a, started["events_url"])) != ""


async def test_events_url_carries_a_ticket_that_opens_only_that_stream(
    keyed: tuple[RunningServer, str, str],
) -> None:
    server, alice, _ = keyed
    async with as_user(server, alice) as a, as_user(server, None) as anonymous:
        first = await ask(a, "first answer", assistant="echo")
        second = await ask(a, "second", assistant="echo")
        assert "?ticket=" in first["events_url"]
        events = await follow(anonymous, first["events_url"])  # EventSource: no header
        assert text_of(events) == "first answer"
        resumed = await follow(anonymous, first["events_url"], last_event_id=events[1].id)
        assert text_of(resumed) == text_of(events[2:])
        ticket = first["events_url"].split("ticket=")[1]
        swapped = await anonymous.get(f"/v1/streams/{second['stream_id']}/events?ticket={ticket}")
        assert swapped.status_code == 404
        altered = ticket[:-2] + ("AA" if not ticket.endswith("AA") else "BB")
        forged = await anonymous.get(f"/v1/streams/{first['stream_id']}/events?ticket={altered}")
        assert forged.status_code == 401 and forged.json()["error"]["code"] == "invalid_ticket"
        as_key = await anonymous.get(
            "/v1/conversations", headers={"authorization": f"Bearer {ticket}"}
        )
        assert as_key.status_code == 401
        key_as_ticket = await anonymous.get(
            f"/v1/streams/{first['stream_id']}/events?ticket={alice}"
        )
        assert key_as_ticket.status_code == 401
        on_post = await anonymous.post(f"/v1/streams/{first['stream_id']}/cancel?ticket={ticket}")
        assert on_post.status_code == 401


async def test_an_expired_ticket_is_refused(make_server: ServerFactory, tmp_path: Path) -> None:
    alice = add_user(tmp_path, "alice")
    server = make_server(data_dir=tmp_path, ticket_ttl=1)
    async with as_user(server, alice) as a, as_user(server, None) as anonymous:
        started = await ask(a, "soon stale", assistant="echo")
        await asyncio.sleep(2.1)  # expiry is in whole seconds
        expired = await anonymous.get(started["events_url"])
        assert expired.status_code == 401 and expired.json()["error"]["code"] == "ticket_expired"
        fresh = (await a.post("/v1/tickets", json={"stream_id": started["stream_id"]})).json()
        assert text_of(await follow(anonymous, fresh["events_url"])) == "soon stale"


async def test_the_channel_by_ticket_carries_only_its_users_streams(
    keyed: tuple[RunningServer, str, str],
) -> None:
    server, alice, bob = keyed
    async with (
        as_user(server, alice) as a,
        as_user(server, bob) as b,
        as_user(server, None) as anon,
    ):
        channel = (await b.post("/v1/tickets", json={})).json()["events_url"]
        assert channel.startswith("/v1/events?ticket=")
        async with anon.stream("GET", channel) as response:
            assert response.status_code == 200
            connected = await read_events(response, limit=1)
            await ask(a, "alice's secret", assistant="echo")
            mine = await ask(b, "bob's", assistant="echo")
            seen = await read_events(response, limit=4)  # start, delta, delta?, end
        assert connected[0].event == "connected"
        assert all(mine["stream_id"] in e.data for e in seen)
        others = await a.post("/v1/tickets", json={"stream_id": mine["stream_id"]})
        assert others.status_code == 404


async def test_the_openai_sdk_signs_in_with_the_same_key(
    keyed: tuple[RunningServer, str, str],
) -> None:
    server, alice, _ = keyed
    client = openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key=alice, max_retries=0)
    completion = await client.chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "sdk"}]
    )
    assert completion.choices[0].message.content == "sdk"
    wrong = openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="tw_nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        await wrong.models.list()
    await client.close()
    await wrong.close()


async def test_serve_says_whether_auth_is_on(tmp_path: Path, replicas: Replicas) -> None:
    opened = await replicas.start(host="0.0.0.0", insecure="true")  # noqa: S104 - the point
    assert "auth: off" in opened.output() and "--insecure" in opened.output()
    add_user(replicas.data_dir, "dave")
    keyed = await replicas.start()
    assert "auth: on, 1 user(s)" in keyed.output()
    async with httpx.AsyncClient(base_url=keyed.url) as client:
        assert (await client.get("/v1/assistants")).status_code == 401
