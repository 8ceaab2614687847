"""One SQL database, shared by every store: its engine, its transactions, its health.

The conversation store and the user store run on the same engine, so they share
one rule for a database that cannot be reached: a failure to connect, or a
connection lost mid-transaction, becomes ``StoreUnavailable`` (a clean 503 that
heals once the database is back), never a traceback. Any other database error
is a bug in a query and is raised as it is.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from typewriter.errors import StoreUnavailable

__all__ = ["Database"]

log = logging.getLogger(__name__)
_UNAVAILABLE = "the conversation store is unavailable; try again shortly"


class Database:
    """An engine for ``url`` (an SQLAlchemy async URL), SQLite or PostgreSQL."""

    def __init__(self, url: str) -> None:
        self.url = url
        if url.startswith("sqlite"):
            # One connection: SQLite has one writer at a time, and concurrent
            # transactions on several connections wait in SQLite's busy handler
            # (sleeps of up to 100 ms) instead of in a cheap asyncio queue.
            self.engine: AsyncEngine = create_async_engine(url, pool_size=1, max_overflow=0)
            sa.event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        else:
            self.engine = create_async_engine(url, pool_pre_ping=True)

    def describe(self) -> str:
        """Where the conversations are, for the start-up line (never with a password)."""
        return self.engine.url.render_as_string(hide_password=True)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """One transaction; any failure to reach the database becomes a clean 503."""
        try:
            async with self.engine.begin() as connection:
                yield connection
        except (
            sa.exc.OperationalError,
            sa.exc.InterfaceError,
            sa.exc.TimeoutError,
            OSError,
        ) as exc:
            log.warning("database unavailable: %s", type(exc).__name__)
            raise StoreUnavailable(_UNAVAILABLE) from None
        except sa.exc.DBAPIError as exc:
            if exc.connection_invalidated:
                raise StoreUnavailable(_UNAVAILABLE) from None
            raise

    async def close(self) -> None:
        await self.engine.dispose()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
