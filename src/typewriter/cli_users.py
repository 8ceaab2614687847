"""Users and their API keys, kept as hashes in the store: add, list, revoke.

The commands open the same store serve uses (the platform's data directory,
or the same --data-dir, --database-url or --config), so a key added here works
on a running server within a few seconds, and on every replica sharing the
database. Each says which database it used; only users add creates one.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from sqlalchemy.engine import make_url

from typewriter.cli_help import Typer
from typewriter.config import Settings, load_settings
from typewriter.errors import ConfigError, NotFound, TypewriterError
from typewriter.store.factory import sqlite_path, started_store
from typewriter.store.users import UserStore

__all__ = [
    "ConfigFile",
    "DataDir",
    "DatabaseUrl",
    "active_users",
    "database_of",
    "stamp",
    "store_settings",
    "users_app",
    "with_users",
]

T = TypeVar("T")

users_app = Typer(no_args_is_help=True, help=__doc__)

DataDir = Annotated[
    Path | None,
    typer.Option(help="where the SQLite file lives (default: the platform's data directory)"),
]
DatabaseUrl = Annotated[
    str | None, typer.Option(help="postgresql+asyncpg://… (default: SQLite in the data directory)")
]
ConfigFile = Annotated[Path | None, typer.Option(help="TOML settings file")]


def store_settings(
    config: Path | None, data_dir: Path | None, database_url: str | None
) -> Settings:
    try:
        settings = load_settings(config, data_dir=data_dir, database_url=database_url)
    except ConfigError as exc:
        typer.echo(f"typewriter: {exc.message}", err=True)
        raise typer.Exit(2) from None
    if settings.database_url == "none":
        typer.echo("typewriter: users need a store; database_url is 'none'", err=True)
        raise typer.Exit(2)
    return settings


def database_of(settings: Settings) -> str:
    """Which database a command uses, as an operator would look for it (no password)."""
    path = sqlite_path(settings)
    if path is not None:
        return str(path)
    return make_url(str(settings.database_url)).render_as_string(hide_password=True)


def with_users(
    settings: Settings,
    action: Callable[[UserStore], Awaitable[T]],
    *,
    create: bool = False,
    say_where: bool = True,
) -> T:
    """Run ``action`` on the store's users; only with ``create`` may the store be new.

    Afterwards one line on stderr names the database; a failure is that one line
    instead, exit status 2 for a wrong setting or name, 1 for anything else.
    """

    async def run() -> T:
        async with started_store(settings, create=create) as store:
            return await action(UserStore(store))

    path = sqlite_path(settings)
    new = path is not None and not path.exists()
    try:
        result = asyncio.run(run())
    except ConfigError as exc:
        typer.echo(f"typewriter: {exc.message}", err=True)
        raise typer.Exit(2) from None
    except TypewriterError as exc:
        typer.echo(f"typewriter: {exc.message} (database: {database_of(settings)})", err=True)
        raise typer.Exit(2 if isinstance(exc, NotFound) else 1) from None
    if say_where:
        made = "created database" if new else "database:"
        typer.echo(f"{made} {database_of(settings)}", err=True)
    return result


def stamp(seconds: float) -> str:
    """A time for a listing: UTC to the minute, the same on every operator's terminal."""
    return f"{datetime.datetime.fromtimestamp(seconds, datetime.UTC):%Y-%m-%d %H:%M}Z"


def active_users(settings: Settings) -> int:
    """How many users can sign in: 0 means auth is off (for ``serve``'s safety check)."""
    if settings.database_url == "none":
        return 0
    return with_users(settings, lambda users: users.active_count(), create=True, say_where=False)


@users_app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="the user's name (letters, digits, _ . @ -)")],
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    config: ConfigFile = None,
) -> None:
    """Add a user and print its API key: shown this once, only its hash is kept."""
    settings = store_settings(config, data_dir, database_url)
    user, key = with_users(settings, lambda users: users.add(name), create=True)
    typer.echo(f"added {user.name} ({user.id}); API key, shown only now:", err=True)
    typer.echo(key)


@users_app.command("list")
def list_users(
    data_dir: DataDir = None, database_url: DatabaseUrl = None, config: ConfigFile = None
) -> None:
    """Users, with how many live keys each has (never the keys)."""
    for user in with_users(store_settings(config, data_dir, database_url), lambda u: u.list()):
        state = "revoked" if user.revoked_at is not None else f"{user.keys} key(s)"
        typer.echo(f"{user.name}\t{user.id}\t{stamp(user.created_at)}\t{state}")


@users_app.command("revoke")
def revoke(
    name: Annotated[str, typer.Argument(help="the user to revoke")],
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    config: ConfigFile = None,
) -> None:
    """Revoke a user and all its keys (running servers notice within seconds)."""
    user = with_users(store_settings(config, data_dir, database_url), lambda u: u.revoke(name))
    typer.echo(f"revoked {user.name} ({user.id})")
