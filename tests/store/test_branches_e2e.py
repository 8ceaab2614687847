"""Branches over HTTP on a real server (SQLite and PostgreSQL): edit and resend, a
question's parent, listing one branch, and the history the model sees following it."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from conftest import RunningServer, ServerFactory
from helpers import ask, follow, text_of
from images import png_uri

pytestmark = [pytest.mark.anyio, pytest.mark.integration]
FAST = {"simulate": {"tokens_per_second": 5000}}
ECHO_HISTORY = {"simulate": {"tokens_per_second": 5000, "echo_history": True}}


@pytest.fixture
def server(make_server: ServerFactory, database_url: str) -> RunningServer:
    return make_server(database_url=database_url)


@pytest.fixture
async def client(server: RunningServer) -> Any:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        yield http


async def answered(client: httpx.AsyncClient, reply: dict[str, Any]) -> str:
    """Follow an answer to its end; its text."""
    return text_of(await follow(client, reply["events_url"]))


async def seen_by_model(client: httpx.AsyncClient, reply: dict[str, Any]) -> list[str]:
    """The texts the model received (asked with ``echo_history``), oldest first."""
    return [m["content"] for m in json.loads(await answered(client, reply))]


async def edit(
    client: httpx.AsyncClient, question_id: str, message: str, **fields: Any
) -> dict[str, Any]:
    response = await client.post(
        f"/v1/messages/{question_id}/edit", json={"message": message, **fields}
    )
    assert response.status_code == 202, response.text
    result: dict[str, Any] = response.json()
    return result


async def branch(
    client: httpx.AsyncClient, conversation_id: str, through: str | None = None
) -> list[dict[str, Any]]:
    params = {"through": through} if through else {}
    response = await client.get(f"/v1/conversations/{conversation_id}/branch", params=params)
    assert response.status_code == 200, response.text
    messages: list[dict[str, Any]] = response.json()["messages"]
    return messages


async def two_turns(client: httpx.AsyncClient) -> tuple[dict[str, Any], dict[str, Any]]:
    """A conversation "one" → "one", "two" → "two" (echo): the replies of both asks."""
    first = await ask(client, "one", assistant="echo", options=FAST)
    await answered(client, first)
    second = await ask(
        client, "two", assistant="echo", options=FAST, conversation_id=first["conversation_id"]
    )
    await answered(client, second)
    return first, second


async def test_an_edited_question_is_a_branch_and_the_model_sees_only_that_branch(
    client: httpx.AsyncClient,
) -> None:
    first, second = await two_turns(client)
    conversation = first["conversation_id"]
    edited = await edit(client, second["question_id"], "two, edited", options=ECHO_HISTORY)
    assert edited["conversation_id"] == conversation
    assert await seen_by_model(client, edited) == ["one", "one", "two, edited"]

    shown = await branch(client, conversation)
    assert [m["text"] for m in shown[:3]] == ["one", "one", "two, edited"]
    assert [m["id"] for m in shown] == [
        first["question_id"],
        first["message_id"],
        edited["question_id"],
        edited["message_id"],
    ]
    assert shown[2]["parent_id"] == first["message_id"]
    assert shown[2]["siblings"] == [second["question_id"], edited["question_id"]]
    assert [len(m["siblings"]) for m in shown] == [1, 1, 2, 1]

    # the first version's branch is still there, whole
    old = await branch(client, conversation, through=second["question_id"])
    assert [m["text"] for m in old] == ["one", "one", "two", "two"]
    assert old[2]["siblings"] == shown[2]["siblings"]

    # a new question follows the newest message (the edited branch) ...
    after = await ask(
        client, "three", assistant="echo", options=ECHO_HISTORY, conversation_id=conversation
    )
    seen = await seen_by_model(client, after)
    assert seen[:3] == ["one", "one", "two, edited"] and seen[-1] == "three"
    assert "two" not in seen
    # ... and parent_id continues the older branch instead
    older = await ask(
        client, "four", assistant="echo", options=ECHO_HISTORY, parent_id=second["message_id"]
    )
    assert older["conversation_id"] == conversation
    assert await seen_by_model(client, older) == ["one", "one", "two", "two", "four"]
    on_it = await branch(client, conversation, through=older["question_id"])
    assert [m["id"] for m in on_it][2:] == [
        second["question_id"],
        second["message_id"],
        older["question_id"],
        older["message_id"],
    ]


async def test_editing_the_first_question_makes_a_second_root(client: httpx.AsyncClient) -> None:
    first, _ = await two_turns(client)
    edited = await edit(client, first["question_id"], "uno", options=ECHO_HISTORY)
    assert await seen_by_model(client, edited) == ["uno"]
    shown = await branch(client, first["conversation_id"])
    assert shown[0]["parent_id"] is None and shown[0]["text"] == "uno"
    assert shown[0]["siblings"] == [first["question_id"], edited["question_id"]]
    assert len(shown) == 2  # the new question and its answer: the old "two" is not on it


async def test_a_regenerated_answer_is_a_branch_without_what_followed_the_first(
    client: httpx.AsyncClient,
) -> None:
    first, second = await two_turns(client)
    conversation = first["conversation_id"]
    response = await client.post(
        f"/v1/messages/{first['message_id']}/regenerate", json={"options": FAST}
    )
    assert response.status_code == 202, response.text
    again = response.json()
    assert again["question_id"] == first["question_id"]
    await answered(client, again)
    shown = await branch(client, conversation)
    assert [m["id"] for m in shown] == [first["question_id"], again["message_id"]]
    assert shown[1]["siblings"] == [first["message_id"], again["message_id"]]
    old = await branch(client, conversation, through=first["message_id"])
    assert [m["id"] for m in old] == [
        first["question_id"],
        first["message_id"],
        second["question_id"],
        second["message_id"],
    ]
    # every message of every branch, in the order written, each with its parent
    listed = (await client.get(f"/v1/conversations/{conversation}")).json()["messages"]
    assert [m["parent_id"] for m in listed] == [
        None,
        first["question_id"],
        first["message_id"],
        second["question_id"],
        first["question_id"],
    ]


async def test_an_edit_keeps_the_questions_images_unless_it_sends_others(
    client: httpx.AsyncClient,
) -> None:
    first = await ask(
        client, "look", assistant="echo", options=FAST, images=[{"data_url": png_uri()}]
    )
    await answered(client, first)
    kept = await edit(client, first["question_id"], "look again", options=FAST)
    await answered(client, kept)
    replaced = await edit(client, first["question_id"], "no picture", options=FAST, images=[])
    await answered(client, replaced)
    listed = (await client.get(f"/v1/conversations/{first['conversation_id']}")).json()
    by_id = {m["id"]: m for m in listed["messages"]}
    original = by_id[first["question_id"]]["attachments"]
    copied = by_id[kept["question_id"]]["attachments"]
    assert [a["size"] for a in copied] == [a["size"] for a in original] != []
    assert copied[0]["id"] != original[0]["id"]
    image = await client.get(copied[0]["url"])
    assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
    assert by_id[replaced["question_id"]]["attachments"] == []  # "images": [] sends none


async def test_the_markdown_export_follows_a_branch(client: httpx.AsyncClient) -> None:
    first, second = await two_turns(client)
    edited = await edit(client, second["question_id"], "zwei", options=FAST)
    await answered(client, edited)
    url = f"/v1/conversations/{first['conversation_id']}/export"
    newest = (await client.get(url)).text
    assert "zwei" in newest and "\ntwo\n" not in newest
    older = (await client.get(url, params={"through": second["message_id"]})).text
    assert "\ntwo\n" in older and "zwei" not in older


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        ("/v1/chat", {"message": "x", "parent_id": "QUESTION"}, 422, "invalid_field"),
        ("/v1/chat", {"message": "x", "parent_id": "msg_nope"}, 404, "message_not_found"),
        (
            "/v1/chat",
            {"message": "x", "parent_id": "ANSWER", "conversation_id": "OTHER"},
            422,
            "invalid_field",
        ),
        ("/v1/messages/ANSWER/edit", {"message": "x"}, 422, "invalid_field"),
        ("/v1/messages/msg_nope/edit", {"message": "x"}, 404, "message_not_found"),
        ("/v1/messages/QUESTION/edit", {"message": ""}, 422, "invalid_field"),
        ("/v1/messages/QUESTION/edit", {"message": "x", "parent_id": "a"}, 422, "invalid_field"),
    ],
)
async def test_a_bad_parent_or_edit_is_refused_and_changes_nothing(
    client: httpx.AsyncClient, path: str, body: dict[str, Any], status: int, code: str
) -> None:
    first = await ask(client, "one", assistant="echo", options=FAST)
    await answered(client, first)
    other = await ask(client, "other", assistant="echo", options=FAST)
    await answered(client, other)
    names = {
        "QUESTION": first["question_id"],
        "ANSWER": first["message_id"],
        "OTHER": other["conversation_id"],
    }
    resolve = lambda value: names.get(value, value) if isinstance(value, str) else value  # noqa: E731
    before = (await client.get(f"/v1/conversations/{first['conversation_id']}")).json()
    response = await client.post(
        "/".join(names.get(part, part) for part in path.split("/")),
        json={key: resolve(value) for key, value in body.items()},
    )
    assert (response.status_code, response.json()["error"]["code"]) == (status, code)
    after = (await client.get(f"/v1/conversations/{first['conversation_id']}")).json()
    assert after["messages"] == before["messages"]


async def test_a_branch_through_an_unknown_message_is_not_found(client: httpx.AsyncClient) -> None:
    first = await ask(client, "one", assistant="echo", options=FAST)
    await answered(client, first)
    other = await ask(client, "other", assistant="echo", options=FAST)
    await answered(client, other)
    url = f"/v1/conversations/{first['conversation_id']}/branch"
    for through in ("msg_nope", other["message_id"], "bad id!"):
        response = await client.get(url, params={"through": through})
        assert (response.status_code, response.json()["error"]["code"]) == (
            404,
            "message_not_found",
        )
