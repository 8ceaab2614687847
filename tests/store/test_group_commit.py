"""A new conversation's question recorded after the ask returned (``store.group_commit``).

On SQLite the ``202`` (and the first token) no longer waits for the question's commit.
What must not change for it: the question is in the file before the answer's ``end`` is
published, the server that took the ask reads it back at once, a Stop right after the
ask keeps the question and its cancelled answer, and a commit that fails is an error
the user sees with nothing half-stored, never an answer that looks kept and is not.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import httpx
import pytest

from conftest import ServerFactory, read_events
from helpers import ask, data_of, follow, last, text_of

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

SLOW = {"simulate": {"tokens_per_second": 20}}
FAST = {"simulate": {"tokens_per_second": 100_000}}


def stored(database: Path, conversation_id: str) -> list[tuple[str, str, str, str | None]]:
    """The conversation's rows as another process finds them in the file: (role, text,
    status, finish reason), in order."""
    reader = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        query = (
            "SELECT role, text, status, finish_reason FROM messages "
            "WHERE conversation_id = ? ORDER BY position"
        )
        return [tuple(row) for row in reader.execute(query, (conversation_id,))]
    finally:
        reader.close()


async def test_end_is_published_only_once_the_question_is_in_the_file(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    """Read at the instant ``end`` arrives, by another connection, the file holds the
    question and its whole answer: ``end`` waits for the deferred commit, for a question
    that starts a conversation and for one that follows in it. The answers are short and
    fast, so they end well within the commit window."""
    server = make_server(data_dir=tmp_path)
    database = tmp_path / "typewriter.db"
    headers = {"accept": "text/event-stream"}
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        for i in range(8):
            conversation_id = None
            rows: list[tuple[str, str, str, str | None]] = []
            for message in (f"q{i} ✓", f"and then {i}"):
                body = {"message": message, "assistant": "echo", "options": FAST}
                if conversation_id is not None:
                    body["conversation_id"] = conversation_id
                async with client.stream(
                    "POST", "/v1/chat", json=body, headers=headers
                ) as response:
                    assert response.status_code == 200
                    events = await read_events(response)
                assert events[-1].event == "end"
                conversation_id = data_of(events[0])["conversation_id"]
                rows += [("user", message, "done", None), ("assistant", message, "done", "stop")]
                assert stored(database, conversation_id) == rows


async def test_the_server_that_took_the_ask_reads_the_question_at_once(
    make_server: ServerFactory, database_url: str
) -> None:
    """Right after the 202, before any commit window has passed, the conversation, its
    list and the messages are there, for a new conversation and for a question into one
    (both engines: PostgreSQL records before the 202)."""
    server = make_server(database_url=database_url)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        for i in range(10):
            started = await ask(client, f"read me back {i}", assistant="echo", options=FAST)
            conversation = await client.get(f"/v1/conversations/{started['conversation_id']}")
            assert conversation.status_code == 200, conversation.text
            messages = conversation.json()["messages"]
            assert [m["id"] for m in messages] == [started["question_id"], started["message_id"]]
            assert messages[0]["text"] == f"read me back {i}"
            listed = (await client.get("/v1/conversations")).json()["data"]
            assert listed[0]["id"] == started["conversation_id"]
            await follow(client, started["events_url"])
            then = await ask(
                client, "and then", conversation_id=started["conversation_id"], assistant="echo"
            )
            path = f"/v1/conversations/{started['conversation_id']}/branch"
            branch = (await client.get(path)).json()["messages"]
            assert [m["id"] for m in branch][2:] == [then["question_id"], then["message_id"]]
            await follow(client, then["events_url"])


async def test_stop_right_after_the_ask_keeps_the_question_and_the_cancelled_answer(
    make_server: ServerFactory, database_url: str
) -> None:
    """Stop sent before the question's commit: the answer's save waits for it, so the
    answer is not left ``streaming`` (an update that found no row) but ends cancelled."""
    server = make_server(database_url=database_url)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        started = await ask(client, "stop me " * 20, assistant="echo", options=SLOW)
        stopped = await client.post(f"/v1/streams/{started['stream_id']}/cancel")
        assert stopped.status_code == 202
        events = await follow(client, started["events_url"])
        assert last(events, "end")["finish_reason"] == "cancelled"
        body = (await client.get(f"/v1/conversations/{started['conversation_id']}")).json()
    question, answer = body["messages"]
    assert (question["role"], question["text"]) == ("user", "stop me " * 20)
    assert (answer["status"], answer["finish_reason"]) == ("done", "cancelled")
    assert answer["text"] == text_of(events)


async def test_a_commit_that_fails_ends_the_answer_with_an_error_and_stores_nothing(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    """Another process holds SQLite's write lock past the busy timeout, so the deferred
    commit fails: the user, who had their 202, sees the answer end ``error``
    (``store_unavailable``), and no part of the turn is in the file, then or later."""
    server = make_server(data_dir=tmp_path)
    database = tmp_path / "typewriter.db"
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        await ask(client, "warm up", assistant="echo")  # the schema, the first connection
        locker = sqlite3.connect(database, isolation_level=None)
        try:
            locker.execute("BEGIN IMMEDIATE")  # the one writer, until we let go
            started = await ask(client, "never kept", assistant="echo")
            events = await follow(client, started["events_url"])
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        error = last(events, "error")
        assert error["code"] == "store_unavailable"
        assert "could not be stored" in error["message"]
        assert last(events, "end")["finish_reason"] == "error"
        assert stored(database, started["conversation_id"]) == []
        await asyncio.sleep(0.2)  # nothing written late either (a retry, a final save)
        assert stored(database, started["conversation_id"]) == []
        gone = await client.get(f"/v1/conversations/{started['conversation_id']}")
        assert gone.status_code == 404
        again = await ask(client, "kept now", assistant="echo")  # the store heals by itself
        assert last(await follow(client, again["events_url"]), "end")["finish_reason"] == "stop"
        assert stored(database, again["conversation_id"])[0][:2] == ("user", "kept now")


async def test_a_follow_up_whose_commit_fails_leaves_its_conversation_as_it_was(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    """The same failure for a question into a conversation: the user sees the error, the
    conversation keeps only what it had, and it is free for the next question (no claim
    left behind to answer ``409`` for ever)."""
    server = make_server(data_dir=tmp_path)
    database = tmp_path / "typewriter.db"
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        first = await ask(client, "kept", assistant="echo")
        await follow(client, first["events_url"])
        conversation_id = first["conversation_id"]
        before = stored(database, conversation_id)
        locker = sqlite3.connect(database, isolation_level=None)
        try:
            locker.execute("BEGIN IMMEDIATE")
            lost = await ask(client, "lost", conversation_id=conversation_id, assistant="echo")
            events = await follow(client, lost["events_url"])
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        assert last(events, "error")["code"] == "store_unavailable"
        assert last(events, "end")["finish_reason"] == "error"
        assert stored(database, conversation_id) == before
        again = await ask(client, "next", conversation_id=conversation_id, assistant="echo")
        assert last(await follow(client, again["events_url"]), "end")["finish_reason"] == "stop"
        assert [row[1] for row in stored(database, conversation_id)] == [
            "kept",
            "kept",
            "next",
            "next",
        ]
