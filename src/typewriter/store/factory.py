"""Which store a server uses: SQLite in the data directory unless told otherwise.

Opening it at start-up is where a wrong ``data_dir`` or ``database_url`` shows,
so :func:`started_store` turns every way of failing there (a directory that
cannot be written, a database that cannot be reached, a malformed URL) into one
:class:`~typewriter.errors.ConfigError` naming the setting.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import sqlalchemy as sa

from typewriter.config import Settings
from typewriter.errors import ConfigError
from typewriter.private_files import create_private_file, make_private_dir, warn_if_exposed
from typewriter.store.sql import SqlStore

__all__ = ["SQLITE_FILE", "open_store", "sqlite_path", "started_store"]

log = logging.getLogger(__name__)

SQLITE_FILE = "typewriter.db"


def sqlite_path(settings: Settings) -> Path | None:
    """The SQLite file of the default store; ``None`` when ``database_url`` names another."""
    if settings.database_url is not None:
        return None
    return (settings.data_dir / SQLITE_FILE).resolve()


def open_store(settings: Settings, *, create: bool = True) -> SqlStore | None:
    """``database_url = "none"`` keeps no history (benchmarks, stateless gateways).

    Without ``create``, a missing SQLite file is refused rather than made: a
    command run with another data directory must not start a second, empty
    database that the server never reads.
    """
    if settings.database_url == "none":
        return None
    url = str(settings.database_url)
    path = sqlite_path(settings)
    if path is not None:
        if not create and not path.exists():
            raise ConfigError(
                f"no database at {path} (data_dir): create it with 'typewriter users add NAME', "
                "or give the --data-dir or --database-url the server uses"
            )
        _writable(settings.data_dir)
        _private_database(path)
        log.info("conversations are kept in %s", path)
        url = f"sqlite+aiosqlite:///{path}"
    try:
        return SqlStore(url)
    except (sa.exc.ArgumentError, ImportError, ValueError) as exc:
        raise ConfigError(f"invalid setting database_url: {_reason(exc)}") from None


@asynccontextmanager
async def started_store(settings: Settings, *, create: bool = True) -> AsyncIterator[SqlStore]:
    """The store with its schema up to date, closed on leaving; requires a store."""
    store = open_store(settings, create=create)
    if store is None:
        raise ConfigError("this needs a store, and database_url is 'none'")
    try:
        try:
            await store.start()
        except (sa.exc.SQLAlchemyError, OSError) as exc:
            raise ConfigError(_unusable(settings, store, exc)) from None
        yield store
    finally:
        await store.close()


def _private_database(path: Path) -> None:
    """A new database file made 0600 (its -wal and -shm follow); an old one checked."""
    if create_private_file(path):
        return
    wal, shm = (path.with_name(path.name + suffix) for suffix in ("-wal", "-shm"))
    warn_if_exposed([path.parent, path, wal, shm])


def _writable(data_dir: Path) -> None:
    """Made (0700) if missing, and proved writable, so a read-only directory is named as such."""
    try:
        make_private_dir(data_dir)
        with tempfile.TemporaryFile(dir=data_dir):
            pass
    except OSError as exc:
        raise ConfigError(
            f"data_dir {data_dir} is not writable ({_reason(exc)}): "
            "give --data-dir (TYPEWRITER_DATA_DIR) a directory this user can write"
        ) from None


def _unusable(settings: Settings, store: SqlStore, exc: Exception) -> str:
    if settings.database_url is None:
        return f"cannot open the SQLite file in data_dir ({sqlite_path(settings)}): {_reason(exc)}"
    return f"cannot reach database_url {store.describe()}: {_reason(exc)}"


def _reason(exc: BaseException) -> str:
    """The driver's own words, on one line, without SQLAlchemy's statement and link."""
    cause = getattr(exc, "orig", None) or exc
    if isinstance(cause, OSError) and cause.strerror and not isinstance(cause, TimeoutError):
        return cause.strerror
    text = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
    if not text:
        return type(cause).__name__
    return text if type(cause).__name__ == "Error" else f"{type(cause).__name__}: {text}"
