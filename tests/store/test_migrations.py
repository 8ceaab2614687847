"""Migrations on both engines: one transaction per run, and one run at a time on PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

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
