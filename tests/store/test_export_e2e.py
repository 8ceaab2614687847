"""``GET /v1/conversations/{id}/export``: a conversation as a Markdown or JSON download, on a
real server; the owner's only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import unquote

import httpx
import pytest

from conftest import RunningServer, ServerFactory
from helpers import add_user, ask, follow

pytestmark = [pytest.mark.anyio, pytest.mark.integration]
FAST = {"simulate": {"tokens_per_second": 5000}}


@pytest.fixture
def keys(tmp_path: Path) -> tuple[str, str]:
    return add_user(tmp_path, "alice"), add_user(tmp_path, "bob")


@pytest.fixture
def server(make_server: ServerFactory, tmp_path: Path, keys: tuple[str, str]) -> RunningServer:
    return make_server(data_dir=tmp_path)


def as_user(server: RunningServer, key: str) -> httpx.AsyncClient:
    headers = {"authorization": f"Bearer {key}"}
    return httpx.AsyncClient(base_url=server.url, headers=headers, timeout=30)


@pytest.fixture
async def alice(server: RunningServer, keys: tuple[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    async with as_user(server, keys[0]) as http:
        yield http


async def conversation_with(client: httpx.AsyncClient, *questions: str) -> str:
    conversation_id: str | None = None
    for question in questions:
        fields: dict[str, str] = {"conversation_id": conversation_id} if conversation_id else {}
        started = await ask(client, question, assistant="echo", options=FAST, **fields)
        await follow(client, started["events_url"])
        conversation_id = str(started["conversation_id"])
    assert conversation_id is not None
    return conversation_id


async def test_markdown_export_holds_the_title_and_each_message(
    alice: httpx.AsyncClient,
) -> None:
    table = "Here is a **table**:\n\n| a | b |"
    cid = await conversation_with(alice, table, "什么是服务器推送事件？")
    await alice.patch(f"/v1/conversations/{cid}", json={"title": 'Notes: "SSE" / ../../etc'})
    response = await alice.get(f"/v1/conversations/{cid}/export")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/markdown; charset=utf-8"
    assert response.headers["cache-control"] == "private, no-store"
    disposition = response.headers["content-disposition"]
    assert disposition.startswith(f'attachment; filename="conversation-{cid}.md"; ')
    saved_as = unquote(disposition.split("filename*=UTF-8''")[1])
    assert saved_as == "Notes-SSE-etc.md"
    text = response.text
    assert text.startswith('# Notes: "SSE" / ../../etc\n\n## You\n')
    assert text.count("## You") == 2 and text.count("## Assistant") == 2
    assert text.count("Here is a **table**:\n\n| a | b |") == 2  # the question and its echo
    assert text.index("什么是服务器推送事件？") > text.index("| a | b |")


async def test_json_export_is_the_conversation_with_its_messages(
    alice: httpx.AsyncClient,
) -> None:
    cid = await conversation_with(alice, "hello there")
    response = await alice.get(f"/v1/conversations/{cid}/export", params={"format": "json"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["content-disposition"].endswith(".json")
    assert response.json() == (await alice.get(f"/v1/conversations/{cid}")).json()
    wrong = await alice.get(f"/v1/conversations/{cid}/export", params={"format": "pdf"})
    assert wrong.status_code == 422 and wrong.json()["error"]["code"] == "invalid_field"


async def test_another_users_conversation_is_not_found(
    server: RunningServer, alice: httpx.AsyncClient, keys: tuple[str, str]
) -> None:
    cid = await conversation_with(alice, "mine only")
    async with as_user(server, keys[1]) as bob:
        for fmt in ("markdown", "json"):
            response = await bob.get(f"/v1/conversations/{cid}/export", params={"format": fmt})
            assert response.status_code == 404
            assert response.json()["error"]["code"] == "conversation_not_found"
            assert "mine only" not in response.text
        missing = await bob.get("/v1/conversations/not%20an%20id/export")
        assert missing.status_code == 404
