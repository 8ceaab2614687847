"""The database fixtures themselves: both URLs work with SQLAlchemy async, every test gets a
database of its own, and the PostgreSQL server can be stopped and started again.

These pin down what store tests rely on, so a broken fixture shows up here, by name, rather than
as a puzzling failure in every store test at once.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import asyncpg
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from databases import BINDIR_ENV, PostgresServer, run_async

pytestmark = pytest.mark.integration

notes = sa.Table(
    "notes",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("text", sa.String(100), nullable=False),
)


async def round_trip(engine: AsyncEngine) -> list[str]:
    async with engine.begin() as connection:
        await connection.run_sync(notes.metadata.create_all)
        await connection.execute(sa.insert(notes), [{"text": "one"}, {"text": "two"}])
    async with engine.connect() as connection:
        result = await connection.execute(sa.select(notes.c.text).order_by(notes.c.id))
        return list(result.scalars())


@pytest.mark.anyio
async def test_round_trip_from_an_async_test(
    database_url: str, request: pytest.FixtureRequest
) -> None:
    backend = request.node.callspec.id
    assert backend in ("sqlite", "postgresql")
    engine = create_async_engine(database_url)
    try:
        assert engine.dialect.name == backend
        assert await round_trip(engine) == ["one", "two"]
    finally:
        await engine.dispose()


def test_round_trip_from_a_sync_test(database_url: str) -> None:
    async def main() -> list[str]:
        engine = create_async_engine(database_url)
        try:
            return await round_trip(engine)
        finally:
            await engine.dispose()

    assert run_async(main) == ["one", "two"]


# Direct parametrization with indirect=True narrows a test to one backend.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sqlite_url_is_a_fresh_file_in_tmp_path(database_url: str, tmp_path: Path) -> None:
    assert database_url == f"sqlite+aiosqlite:///{tmp_path}/typewriter.db"
    assert not (tmp_path / "typewriter.db").exists()


seen_urls: set[str] = set()


@pytest.mark.parametrize("run", [1, 2])
@pytest.mark.anyio
async def test_every_test_gets_an_empty_database_of_its_own(database_url: str, run: int) -> None:
    # Both runs create the same table: the second would fail on a database the first had used.
    assert database_url not in seen_urls
    seen_urls.add(database_url)
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as connection:
            tables = await connection.run_sync(lambda sync: sa.inspect(sync).get_table_names())
        assert tables == []
        assert await round_trip(engine) == ["one", "two"]
    finally:
        await engine.dispose()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_postgresql_databases_are_dropped_after_their_test(
    database_url: str, postgres_server: PostgresServer
) -> None:
    database = database_url.rsplit("/", 1)[1]
    assert database_url == (
        f"postgresql+asyncpg://postgres@127.0.0.1:{postgres_server.port}/{database}"
    )

    async def databases() -> list[str]:
        connection = await asyncpg.connect(postgres_server.admin_url)
        try:
            rows = await connection.fetch("SELECT datname FROM pg_database WHERE NOT datistemplate")
        finally:
            await connection.close()
        return [row["datname"] for row in rows]

    # The tests above got databases too (when they ran: -k may have left them out); theirs are
    # gone, this test's is there.
    earlier = {url.rsplit("/", 1)[1] for url in seen_urls if url.startswith("postgresql")}
    assert earlier.isdisjoint(run_async(databases))
    assert database in run_async(databases)


def test_server_can_be_stopped_and_started_again(postgres_server: PostgresServer) -> None:
    database = postgres_server.create_database()
    engine_url = postgres_server.url(database)

    async def select_one(engine: AsyncEngine) -> int:
        async with engine.connect() as connection:
            value: int = (await connection.execute(sa.select(1))).scalar_one()
            return value

    async def main() -> None:
        # pool_pre_ping: a pooled connection from before the stop is noticed dead and replaced,
        # as an application that recovers by itself would do.
        engine = create_async_engine(engine_url, pool_pre_ping=True)
        try:
            assert await select_one(engine) == 1
            async with engine.begin() as connection:  # committed just before the stop
                await connection.run_sync(notes.metadata.create_all)
                await connection.execute(sa.insert(notes), [{"text": "kept"}])
            postgres_server.stop()
            try:
                assert not postgres_server.running
                with pytest.raises(OSError):
                    await asyncpg.connect(postgres_server.admin_url, timeout=5)
                # The stale pooled connection fails its ping; the new connection is refused, and
                # SQLAlchemy 2.1 lets asyncpg's ConnectionRefusedError through unwrapped.
                with pytest.raises((sa.exc.DBAPIError, OSError)):
                    await select_one(engine)
            finally:
                postgres_server.start()
            assert await select_one(engine) == 1
            async with engine.connect() as connection:  # a stop loses nothing committed
                assert list(await connection.scalars(sa.select(notes.c.text))) == ["kept"]
            connection = await asyncpg.connect(postgres_server.admin_url, timeout=5)
            await connection.close()
        finally:
            await engine.dispose()

    try:
        run_async(main)
    finally:
        postgres_server.drop_database(database)


def test_missing_binaries_fail_the_postgresql_tests(tmp_path: Path) -> None:
    """Without PostgreSQL the ``postgresql`` variants fail, saying what to run; never a skip."""
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["databases"]\n')
    (tmp_path / "test_uses_database.py").write_text(
        textwrap.dedent(
            """
            def test_url(database_url):
                assert database_url
            """
        )
    )
    env = {
        **os.environ,
        BINDIR_ENV: str(tmp_path / "no-postgresql-here"),
        "PYTHONPATH": str(Path(__file__).parent),
    }
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "1 passed, 1 error" in output, output
    assert "skipped" not in output, output
    assert "PostgreSQL server binaries not found" in output, output
    assert "make test" in output, output
