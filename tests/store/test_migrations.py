"""Migrations on both engines: one transaction per run, and one run at a time on PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from typewriter.errors import ConfigError
from typewriter.store import migrations, schema
from typewriter.store.migrations import LOCK_KEY, STEPS, migrate

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    opened = create_async_engine(database_url)
    yield opened
    await opened.dispose()


async def versions(engine: AsyncEngine) -> list[int]:
    async with engine.connect() as connection:
        rows = await connection.execute(sa.select(schema.schema_migrations.c.version))
        return sorted(row.version for row in rows)


async def tables(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as connection:
        return set(await connection.run_sync(lambda sync: sa.inspect(sync).get_table_names()))


def broken(connection: sa.Connection) -> None:
    schema.metadata.create_all(connection, tables=[schema.users])
    raise RuntimeError("this step is broken")


async def test_a_run_records_every_version_once(engine: AsyncEngine) -> None:
    assert await migrate(engine) == len(STEPS)
    assert await migrate(engine) == len(STEPS)
    assert await versions(engine) == list(range(1, len(STEPS) + 1))
    assert set(schema.metadata.tables) == await tables(engine)


async def test_a_failed_step_records_no_version_and_the_next_start_completes(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    with monkeypatch.context() as patched:
        patched.setattr(migrations, "STEPS", [STEPS[0], broken])
        with pytest.raises(RuntimeError, match="broken"):
            await migrate(engine)
    if database_url.startswith("postgresql"):
        assert await tables(engine) == set()  # the whole run rolled back, DDL included
    else:
        assert await versions(engine) == []  # the first step's tables may stay: it runs again
    assert await migrate(engine) == len(STEPS)
    assert await versions(engine) == list(range(1, len(STEPS) + 1))
    assert set(schema.metadata.tables) == await tables(engine)


async def waiting_for_the_lock(connection: AsyncConnection) -> int:
    query = sa.text(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        f" AND objid = {LOCK_KEY}"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    )
    return int((await connection.execute(query)).scalar_one())


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_replica_starting_meanwhile_waits_for_the_lock(engine: AsyncEngine) -> None:
    async with engine.connect() as other, engine.connect() as observer:
        await other.execute(sa.text(f"SELECT pg_advisory_xact_lock({LOCK_KEY})"))
        running = asyncio.create_task(migrate(engine))
        async with asyncio.timeout(10):  # until it queues behind the lock held by "other"
            while not await waiting_for_the_lock(observer):
                await asyncio.sleep(0.01)  # poll interval: pg_locks has no event to wait on
        assert not running.done()
        assert "schema_migrations" not in await tables(engine)  # it waits before doing anything
        await other.rollback()  # releases the lock
        assert await asyncio.wait_for(running, 10) == len(STEPS)
    assert await versions(engine) == list(range(1, len(STEPS) + 1))


async def at_version_2(engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    """A database as version 2 left it: no last use of keys, no unique index on names."""
    with monkeypatch.context() as patched:
        patched.setattr(migrations, "STEPS", STEPS[:2])
        assert await migrate(engine) == 2
    async with engine.begin() as connection:
        await connection.execute(sa.text("DROP INDEX ux_users_active_name"))
        await connection.execute(sa.text("ALTER TABLE api_keys DROP COLUMN last_used_at"))


async def test_a_database_made_before_key_use_and_unique_names_gets_both(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    await at_version_2(engine, monkeypatch)
    assert await migrate(engine) == len(STEPS)

    def inspected(sync: sa.Connection) -> tuple[set[str], set[str]]:
        inspector = sa.inspect(sync)
        columns = {column["name"] for column in inspector.get_columns("api_keys")}
        return columns, {str(index["name"]) for index in inspector.get_indexes("users")}

    async with engine.connect() as connection:
        columns, indexes = await connection.run_sync(inspected)
    assert "last_used_at" in columns and "ux_users_active_name" in indexes
    async with engine.connect() as connection:
        insert = schema.users.insert()
        await connection.execute(insert.values(id="usr_1", name="kim", created_at=0.0))
        with pytest.raises(sa.exc.IntegrityError):
            await connection.execute(insert.values(id="usr_2", name="kim", created_at=0.0))


async def test_active_users_sharing_a_name_stop_the_upgrade_until_one_is_revoked(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    await at_version_2(engine, monkeypatch)
    async with engine.begin() as connection:  # two adds that raced before the index
        for user_id in ["usr_1", "usr_2"]:
            await connection.execute(
                schema.users.insert().values(id=user_id, name="lee", created_at=0.0)
            )
    with pytest.raises(ConfigError, match=r"lee \(usr_1\), lee \(usr_2\)"):
        await migrate(engine)
    assert await versions(engine) == [1, 2]
    async with engine.begin() as connection:
        users = schema.users
        await connection.execute(users.update().where(users.c.id == "usr_2").values(revoked_at=1.0))
    assert await migrate(engine) == len(STEPS)


async def test_messages_sharing_a_position_are_numbered_again_and_kept_apart(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Asks that raced before version 4 left two messages at one position."""
    with monkeypatch.context() as patched:
        patched.setattr(migrations, "STEPS", STEPS[:3])
        assert await migrate(engine) == 3
    messages = schema.messages
    async with engine.begin() as connection:
        await connection.execute(sa.text("DROP INDEX ux_messages_conversation_position"))
        await connection.execute(
            sa.text(
                "CREATE INDEX ix_messages_conversation_position"
                " ON messages (conversation_id, position)"
            )
        )
        await connection.execute(
            schema.conversations.insert().values(
                id="conv_1", owner="u", title="t", assistant="echo", created_at=0.0, updated_at=0.0
            )
        )
        for message_id, position, created_at in [("m_a", 1, 1.0), ("m_b", 1, 2.0), ("m_c", 2, 3.0)]:
            await connection.execute(
                messages.insert().values(
                    id=message_id,
                    conversation_id="conv_1",
                    owner="u",
                    position=position,
                    role="user",
                    text="",
                    status="done",
                    created_at=created_at,
                )
            )
    assert await migrate(engine) == len(STEPS)
    async with engine.connect() as connection:
        rows = await connection.execute(
            sa.select(messages.c.id, messages.c.position).order_by(messages.c.position)
        )
        assert [tuple(row) for row in rows] == [("m_a", 1), ("m_b", 2), ("m_c", 3)]
        indexes = await connection.run_sync(lambda sync: sa.inspect(sync).get_indexes("messages"))
        assert "ix_messages_conversation_position" not in {index["name"] for index in indexes}
        with pytest.raises(sa.exc.IntegrityError):
            await connection.execute(
                messages.insert().values(
                    id="m_d",
                    conversation_id="conv_1",
                    owner="u",
                    position=3,
                    role="user",
                    text="",
                    status="done",
                    created_at=4.0,
                )
            )


async def test_messages_stored_before_branches_get_the_parents_their_history_had(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before version 8 a conversation was one line: regenerating the first answer after a
    second question left both answers in the line, and the history took the newer one."""
    with monkeypatch.context() as patched:
        patched.setattr(migrations, "STEPS", STEPS[:7])
        assert await migrate(engine) == 7
    messages = schema.messages
    rows = [  # id, role, reply_to: q1, a1, q2, a2, a1 regenerated, q3 whose answer never came
        ("q1", "user", None),
        ("a1", "assistant", "q1"),
        ("q2", "user", None),
        ("a2", "assistant", "q2"),
        ("a1b", "assistant", "q1"),
        ("q3", "user", None),
        ("q4", "user", None),
    ]
    async with engine.begin() as connection:
        await connection.execute(
            schema.conversations.insert().values(
                id="conv_1", owner="u", title="t", assistant="echo", created_at=0.0, updated_at=0.0
            )
        )
        for position, (message_id, role, reply_to) in enumerate(rows, start=1):
            await connection.execute(
                messages.insert().values(
                    id=message_id,
                    conversation_id="conv_1",
                    owner="u",
                    position=position,
                    role=role,
                    text=message_id,
                    status="done",
                    reply_to=reply_to,
                    created_at=float(position),
                )
            )
    assert await migrate(engine) == len(STEPS)
    async with engine.connect() as connection:
        found = await connection.execute(sa.select(messages.c.id, messages.c.parent_id))
        parents = dict(found.all())
    assert parents == {
        "q1": None,
        "a1": "q1",
        "q2": "a1b",  # the newest answer to q1, as the history read it
        "a2": "q2",
        "a1b": "q1",
        "q3": "a2",
        "q4": "q3",  # q3 was never answered: q4 follows it
    }
