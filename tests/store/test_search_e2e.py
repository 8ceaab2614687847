"""Finding conversations (``GET /v1/conversations?q=``) on a real server, on SQLite and
PostgreSQL: a substring of a title or of any message, in any script, taken literally,
among the caller's conversations only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from conftest import RunningServer, ServerFactory
from helpers import ask, follow, typewriter_cli

pytestmark = [pytest.mark.anyio, pytest.mark.integration]
FAST = {"simulate": {"tokens_per_second": 5000}}


def add_user(database_url: str, name: str) -> str:
    done = typewriter_cli("users", "add", name, "--database-url", database_url)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture
def keys(database_url: str) -> tuple[str, str]:
    return add_user(database_url, "alice"), add_user(database_url, "bob")


@pytest.fixture
def server(make_server: ServerFactory, database_url: str, keys: tuple[str, str]) -> RunningServer:
    return make_server(database_url=database_url)


@pytest.fixture
async def alice(server: RunningServer, keys: tuple[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"authorization": f"Bearer {keys[0]}"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=30) as http:
        yield http


@pytest.fixture
async def bob(server: RunningServer, keys: tuple[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"authorization": f"Bearer {keys[1]}"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=30) as http:
        yield http


async def asked(client: httpx.AsyncClient, question: str) -> str:
    """A conversation holding ``question`` and its (echoed) answer; its id."""
    started = await ask(client, question, assistant="echo", options=FAST)
    await follow(client, started["events_url"])
    conversation_id: str = started["conversation_id"]
    return conversation_id


async def titled(client: httpx.AsyncClient, title: str) -> str:
    response = await client.post("/v1/conversations", json={"title": title})
    assert response.status_code == 201, response.text
    conversation_id: str = response.json()["id"]
    return conversation_id


async def found(client: httpx.AsyncClient, q: str, **params: Any) -> list[str]:
    response = await client.get("/v1/conversations", params={"q": q, **params})
    assert response.status_code == 200, response.text
    return [c["id"] for c in response.json()["data"]]


async def test_search_finds_titles_and_message_text_in_any_case_and_script(
    alice: httpx.AsyncClient,
) -> None:
    chinese = await asked(alice, "请解释一下：什么是服务器推送事件？")
    redis = await asked(alice, "Tell me\nhow Redis Streams keep their entries")
    holiday = await titled(alice, "Holiday PLANS")
    # 服务器 sits inside a sentence with no spaces: a word index would not find it
    assert await found(alice, "服务器") == [chinese]
    assert await found(alice, "什么是服务器推送事件") == [chinese]
    assert await found(alice, "redis streams") == [redis]  # the text, not the title
    assert await found(alice, "holiday plans") == [holiday]  # the title, no message at all
    assert await found(alice, "  ENTRIES ") == [redis]  # trimmed, any case
    assert await found(alice, "nowhere to be seen") == []
    results = (await alice.get("/v1/conversations", params={"q": "streams"})).json()["data"]
    assert [(c["title"], c["snippet"]) for c in results] == [
        ("Tell me", "Tell me how Redis Streams keep their entries")
    ]
    by_title = (await alice.get("/v1/conversations", params={"q": "plans"})).json()["data"]
    assert [(c["id"], c["snippet"]) for c in by_title] == [(holiday, None)]
    listed = await alice.get("/v1/conversations", params={"q": ""})
    assert [c["id"] for c in listed.json()["data"]] == [holiday, redis, chinese]


async def test_wildcards_are_taken_literally_and_sql_is_only_text(
    alice: httpx.AsyncClient,
) -> None:
    percent = await titled(alice, "100% sure")
    digits = await titled(alice, "1000 sure")
    underscore = await titled(alice, "snake_case")
    await titled(alice, "snakeXcase")
    slash = await titled(alice, "C:\\temp\\x")
    assert await found(alice, "100%") == [percent]
    assert await found(alice, "%") == [percent]
    assert await found(alice, "e_c") == [underscore]
    assert await found(alice, "_") == [underscore]
    assert await found(alice, "\\temp\\") == [slash]
    assert await found(alice, "1000") == [digits]
    for shaped in ["' OR 1=1 --", "x'); DROP TABLE conversations; --", '" OR ""="']:
        assert await found(alice, shaped) == []
    assert len(await found(alice, "sure")) == 2  # the table is still there


async def test_search_finds_only_the_callers_conversations(
    alice: httpx.AsyncClient, bob: httpx.AsyncClient
) -> None:
    mine = await asked(alice, "the secret plan is on page 7")
    theirs = await asked(bob, "the secret plan of bob")
    assert await found(alice, "secret plan") == [mine]
    assert await found(bob, "secret plan") == [theirs]
    assert await found(bob, "page 7") == []


async def test_search_pages_like_the_list_and_bounds_its_text(alice: httpx.AsyncClient) -> None:
    ids = [await titled(alice, f"match {n}") for n in range(3)]
    await titled(alice, "other")
    first = (await alice.get("/v1/conversations", params={"q": "match", "limit": 2})).json()
    assert [c["id"] for c in first["data"]] == ids[:0:-1]
    rest = await found(alice, "match", limit=2, cursor=first["next_cursor"])
    assert rest == ids[:1]
    too_long = await alice.get("/v1/conversations", params={"q": "x" * 201})
    assert too_long.status_code == 422
    error = too_long.json()["error"]
    assert error["code"] == "invalid_field" and error["fields"][0]["field"] == "query.q"
    assert len(await found(alice, "服" * 200)) == 0  # 200 characters, however many bytes
