"""``GET /v1/usage`` on a real server, against SQLite and PostgreSQL: what a user sees of
their own tokens, summed per UTC day and assistant, and nobody else's."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from conftest import RunningServer, ServerFactory
from helpers import add_user, ask, follow, last
from typewriter.api.auth import LOCAL_USER
from typewriter.store import migrations, schema
from typewriter.store.migrations import STEPS, migrate
from typewriter.store.usage import usage_columns

pytestmark = [pytest.mark.anyio, pytest.mark.integration]
FAST = {"simulate": {"tokens_per_second": 5000}}
DAY = 86400.0
ZEROS = {
    "answers": 0,
    "without_usage": 0,
    "estimated": 0,
    "prompt_tokens": 0,
    "completion_tokens": 0,
    "total_tokens": 0,
}


@pytest.fixture
def server(make_server: ServerFactory, database_url: str) -> RunningServer:
    return make_server(database_url=database_url)


@pytest.fixture
async def client(server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        yield http


@pytest.fixture
async def engine(database_url: str, server: RunningServer) -> AsyncIterator[AsyncEngine]:
    """The server's own database, to lay down answers of chosen days and owners."""
    opened = create_async_engine(database_url)
    yield opened
    await opened.dispose()


def today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def noon(day: dt.date) -> float:
    return dt.datetime(day.year, day.month, day.day, 12, tzinfo=dt.UTC).timestamp()


async def answered(
    engine: AsyncEngine,
    owner: str,
    assistant: str,
    at: float,
    usage: dict[str, Any] | None,
    conversation: str,
) -> None:
    """One stored answer, as ``answers.finish`` writes it (the JSON and its columns)."""
    async with engine.begin() as db:
        exists = await db.execute(
            sa.select(schema.conversations.c.id).where(schema.conversations.c.id == conversation)
        )
        if exists.first() is None:
            await db.execute(
                schema.conversations.insert().values(
                    id=conversation,
                    owner=owner,
                    title="t",
                    assistant=assistant,
                    created_at=at,
                    updated_at=at,
                )
            )
        position = (
            await db.execute(
                sa.select(sa.func.count()).where(schema.messages.c.conversation_id == conversation)
            )
        ).scalar_one()
        await db.execute(
            schema.messages.insert().values(
                id=f"msg_{conversation}_{position}",
                conversation_id=conversation,
                owner=owner,
                position=position + 1,
                role="assistant",
                text="x",
                status="done",
                assistant=assistant,
                usage=json.dumps(usage) if usage else None,
                created_at=at,
                finished_at=at + 1,
                **usage_columns(usage),
            )
        )


async def test_answers_asked_are_summed_per_assistant(client: httpx.AsyncClient) -> None:
    ends = []
    for assistant, message in [("echo", "one two"), ("echo", "three"), ("default", "hi")]:
        started = await ask(client, message, assistant=assistant, options=FAST)
        ends.append((assistant, last(await follow(client, started["events_url"]), "end")))
    await settled(client)
    response = await client.get("/v1/usage")
    assert response.status_code == 200, response.text
    body = response.json()
    expected: dict[str, dict[str, int]] = {}
    for assistant, end in ends:
        row = expected.setdefault(assistant, dict(ZEROS))
        row["answers"] += 1
        for name in ("prompt_tokens", "completion_tokens", "total_tokens"):
            row[name] += end["usage"][name]
    date = today().isoformat()
    assert body["object"] == "list"
    assert body["data"] == [
        {"date": date, "assistant": name, **expected[name]} for name in ("default", "echo")
    ]
    assert body["total"]["answers"] == 3
    assert body["total"]["total_tokens"] == sum(e["usage"]["total_tokens"] for _, e in ends)
    assert body["to"] == date
    assert body["from"] == (today() - dt.timedelta(days=29)).isoformat()
    echo_only = (await client.get("/v1/usage", params={"assistant": "echo"})).json()
    assert [row["assistant"] for row in echo_only["data"]] == ["echo"]
    assert echo_only["total"] == expected["echo"]


async def settled(client: httpx.AsyncClient) -> None:
    """Until no answer of the local user is still ``streaming``: an answer's end is stored
    just after its ``end`` event is sent."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        page = (await client.get("/v1/conversations", params={"limit": 100})).json()
        streaming = False
        for conversation in page["data"]:
            full = (await client.get(f"/v1/conversations/{conversation['id']}")).json()
            streaming |= any(m["status"] == "streaming" for m in full["messages"])
        if not streaming:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("answers still streaming")


async def test_days_owners_and_answers_without_usage(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    day = today() - dt.timedelta(days=3)
    usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
    estimated = {**usage, "estimated": True}
    await answered(engine, LOCAL_USER, "echo", noon(day), usage, "conv_a")
    await answered(engine, LOCAL_USER, "echo", noon(day) + 3600, estimated, "conv_a")
    await answered(engine, LOCAL_USER, "echo", noon(day) + 7200, None, "conv_a")
    # The last second of the day before, and the first of the day after: other days.
    start = noon(day) - 12 * 3600
    await answered(engine, LOCAL_USER, "echo", start - 0.5, usage, "conv_b")
    await answered(engine, LOCAL_USER, "echo", start + DAY, usage, "conv_b")
    await answered(engine, "usr_someone_else", "echo", noon(day), usage, "conv_c")
    body = (
        await client.get("/v1/usage", params={"from": day.isoformat(), "to": day.isoformat()})
    ).json()
    row = {
        "answers": 3,
        "without_usage": 1,
        "estimated": 1,
        "prompt_tokens": 20,
        "completion_tokens": 10,
        "total_tokens": 30,
    }
    assert body["data"] == [{"date": day.isoformat(), "assistant": "echo", **row}]
    assert body["total"] == row
    around = (
        await client.get(
            "/v1/usage",
            params={
                "from": (day - dt.timedelta(days=1)).isoformat(),
                "to": (day + dt.timedelta(days=1)).isoformat(),
            },
        )
    ).json()
    assert [(r["date"], r["answers"]) for r in around["data"]] == [
        ((day - dt.timedelta(days=1)).isoformat(), 1),
        (day.isoformat(), 3),
        ((day + dt.timedelta(days=1)).isoformat(), 1),
    ]
    assert around["total"]["answers"] == 5  # never the other user's
    nothing = (await client.get("/v1/usage", params={"assistant": "default"})).json()
    assert (nothing["data"], nothing["total"]) == ([], ZEROS)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("from=yesterday", "query.from"),
        ("from=2026-02-30", "query.from"),
        ("to=20261205", "query.to"),
        ("to=2026-12-05T00:00:00", "query.to"),
        ("from=2026-12-06&to=2026-12-05", "query.from"),
        ("from=2020-01-01&to=2026-12-05", "query.from"),
        ("assistant=", "query.assistant"),
        (f"assistant={'a' * 101}", "query.assistant"),
    ],
)
async def test_bad_parameters_name_their_field(
    client: httpx.AsyncClient, query: str, field: str
) -> None:
    response = await client.get(f"/v1/usage?{query}")
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_field"
    assert [f["field"] for f in error["fields"]] == [field]
    assert "Traceback" not in response.text


async def test_without_a_store_there_is_no_usage(make_server: ServerFactory) -> None:
    server = make_server(database_url="none")
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        response = await http.get("/v1/usage")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "no_store"


async def test_the_migration_fills_the_columns_of_earlier_answers(database_url: str) -> None:
    engine = create_async_engine(database_url)
    try:
        with pytest.MonkeyPatch.context() as patched:
            patched.setattr(migrations, "STEPS", STEPS[:4])
            await migrate(engine)
        usage = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
        async with engine.begin() as db:
            await db.execute(
                sa.text(
                    "INSERT INTO conversations (id, owner, title, assistant, created_at,"
                    " updated_at) VALUES ('conv_old', 'local', 't', 'echo', 1, 1)"
                )
            )
            for number, stored in enumerate([json.dumps(usage), None, '{"estimated": true}']):
                await db.execute(
                    sa.text(
                        "INSERT INTO messages (id, conversation_id, owner, position, role,"
                        " text, status, usage, created_at) VALUES (:id, 'conv_old', 'local',"
                        " :position, 'assistant', 'x', 'done', :usage, 1)"
                    ),
                    {"id": f"msg_{number}", "position": number + 1, "usage": stored},
                )
        assert await migrate(engine) == len(STEPS)
        async with engine.connect() as db:
            m = schema.messages
            rows = (
                await db.execute(
                    sa.select(m.c.id, m.c.assistant, m.c.prompt_tokens, m.c.total_tokens).order_by(
                        m.c.id
                    )
                )
            ).all()
        assert [tuple(row) for row in rows] == [
            ("msg_0", "echo", 7, 10),
            ("msg_1", "echo", None, None),
            ("msg_2", "echo", None, None),
        ]
    finally:
        await engine.dispose()


async def test_each_user_sees_only_their_own_usage(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    alice, bob = add_user(tmp_path, "alice"), add_user(tmp_path, "bob")
    server = make_server(data_dir=tmp_path)

    def signed(key: str | None) -> httpx.AsyncClient:
        headers = {"authorization": f"Bearer {key}"} if key else {}
        return httpx.AsyncClient(base_url=server.url, headers=headers, timeout=30)

    async with signed(alice) as as_alice, signed(bob) as as_bob, signed(None) as nobody:
        started = await ask(as_alice, "mine only", assistant="echo", options=FAST)
        end = last(await follow(as_alice, started["events_url"]), "end")
        await settled(as_alice)
        mine = (await as_alice.get("/v1/usage")).json()
        assert mine["total"]["answers"] == 1
        assert mine["total"]["total_tokens"] == end["usage"]["total_tokens"]
        theirs = await as_bob.get("/v1/usage")
        assert (theirs.status_code, theirs.json()["data"], theirs.json()["total"]) == (
            200,
            [],
            ZEROS,
        )
        refused = await nobody.get("/v1/usage")
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "missing_api_key"
