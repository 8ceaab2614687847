"""Rotate a user's API keys, keeping the user: add, list, revoke.

A user's id owns its conversations, so a key is replaced without a new user:
keys add a second key, move the clients to it, keys revoke the first. The
commands open the same store as users and serve (and never create one); a
revoked key stops working on running servers once their few seconds of cached
lookups end.
"""

from __future__ import annotations

from typing import Annotated

import typer

from typewriter.cli_help import Typer
from typewriter.cli_users import ConfigFile, DatabaseUrl, DataDir, stamp, store_settings, with_users

__all__ = ["keys_app"]

keys_app = Typer(no_args_is_help=True, help=__doc__)

UserName = Annotated[str, typer.Argument(help="the user (an active one)")]


@keys_app.command("add")
def add(
    name: UserName,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    config: ConfigFile = None,
) -> None:
    """Add a key to a user and print it: shown this once, only its hash is kept."""
    settings = store_settings(config, data_dir, database_url)
    key_info, key = with_users(settings, lambda users: users.add_key(name))
    typer.echo(f"added key {key_info.id} to {name} ({key_info.user_id}); shown only now:", err=True)
    typer.echo(key)


@keys_app.command("list")
def list_keys(
    name: UserName,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    config: ConfigFile = None,
) -> None:
    """A user's keys: id, created, last used, live or revoked (never the keys)."""
    settings = store_settings(config, data_dir, database_url)
    for key in with_users(settings, lambda users: users.keys(name)):
        used = "never used" if key.last_used_at is None else f"used {stamp(key.last_used_at)}"
        state = "live" if key.revoked_at is None else f"revoked {stamp(key.revoked_at)}"
        typer.echo(f"{key.id}\tcreated {stamp(key.created_at)}\t{used}\t{state}")


@keys_app.command("revoke")
def revoke(
    name: UserName,
    key_id: Annotated[str, typer.Argument(help="the key's id (key_…), from keys list")],
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    config: ConfigFile = None,
) -> None:
    """Revoke one key of a user; its other keys, and the user, keep working."""
    settings = store_settings(config, data_dir, database_url)
    key = with_users(settings, lambda users: users.revoke_key(name, key_id))
    typer.echo(f"revoked key {key.id} of {name} ({key.user_id})")
