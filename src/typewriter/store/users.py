"""Users and their API keys: a key is shown once, only its hash is kept.

A user's id (``usr_…``) is what every stream, conversation and message records
as its owner, so renaming or reusing a name never hands one user's history to
another. Revoking a user revokes all of its keys; nothing is deleted, so an
audit can still tell who owned what.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass

import sqlalchemy as sa

from typewriter.errors import InvalidField, NotFound
from typewriter.ids import new_id
from typewriter.store.database import Database
from typewriter.store.schema import api_keys, users

__all__ = ["KEY_PREFIX", "User", "UserStore", "hash_key"]

KEY_PREFIX = "tw_"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")


@dataclass(frozen=True, slots=True)
class User:
    id: str
    name: str
    created_at: float
    revoked_at: float | None
    keys: int


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


class UserStore:
    """Users on the database the conversations are in (a ``SqlStore`` is one)."""

    def __init__(self, store: Database) -> None:
        self.store = store

    async def add(self, name: str) -> tuple[User, str]:
        """A new user and its first key; the key is returned here and never again."""
        if not _NAME.fullmatch(name):
            raise InvalidField(
                f"user name {name[:80]!r} is not valid: 1-64 letters, digits and _ . @ -, "
                "starting with a letter or digit",
                fields=[{"field": "name", "message": "1-64 of A-Z a-z 0-9 _ . @ -"}],
            )
        now = time.time()
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        user_id = new_id("usr")
        async with self.store.transaction() as db:
            taken = await db.execute(
                sa.select(users.c.id).where(users.c.name == name, users.c.revoked_at.is_(None))
            )
            if taken.first() is not None:
                raise InvalidField(
                    f"a user named {name!r} exists already",
                    fields=[{"field": "name", "message": "taken"}],
                )
            await db.execute(users.insert().values(id=user_id, name=name, created_at=now))
            await db.execute(
                api_keys.insert().values(
                    id=new_id("key"),
                    user_id=user_id,
                    hash=hash_key(key),
                    prefix=key[:10],
                    created_at=now,
                )
            )
        return User(user_id, name, now, None, 1), key

    async def list(self) -> list[User]:
        live_keys = (
            sa.select(sa.func.count())
            .where(api_keys.c.user_id == users.c.id, api_keys.c.revoked_at.is_(None))
            .scalar_subquery()
        )
        async with self.store.transaction() as db:
            rows = await db.execute(
                sa.select(users, live_keys.label("keys")).order_by(users.c.created_at)
            )
            return [
                User(row.id, row.name, row.created_at, row.revoked_at, int(row.keys))
                for row in rows
            ]

    async def revoke(self, name: str) -> User:
        """Revoke the active user of that name and all its keys, at once."""
        now = time.time()
        async with self.store.transaction() as db:
            row = (
                await db.execute(
                    sa.select(users).where(users.c.name == name, users.c.revoked_at.is_(None))
                )
            ).first()
            if row is None:
                raise NotFound(f"no active user named {name!r}", code="user_not_found")
            await db.execute(users.update().where(users.c.id == row.id).values(revoked_at=now))
            await db.execute(
                api_keys.update()
                .where(api_keys.c.user_id == row.id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=now)
            )
        return User(row.id, row.name, row.created_at, now, 0)

    async def user_for_key(self, key: str) -> str | None:
        """The id of the active user owning this active key, or None."""
        if not key.startswith(KEY_PREFIX) or len(key) > 200:
            return None  # not a key at all (a ticket, a typo): no database round trip
        async with self.store.transaction() as db:
            row = (
                await db.execute(
                    sa.select(users.c.id)
                    .select_from(api_keys.join(users, users.c.id == api_keys.c.user_id))
                    .where(
                        api_keys.c.hash == hash_key(key),
                        api_keys.c.revoked_at.is_(None),
                        users.c.revoked_at.is_(None),
                    )
                )
            ).first()
        return None if row is None else str(row.id)

    async def is_active(self, user_id: str) -> bool:
        async with self.store.transaction() as db:
            row = (
                await db.execute(
                    sa.select(users.c.id).where(users.c.id == user_id, users.c.revoked_at.is_(None))
                )
            ).first()
        return row is not None

    async def active_count(self) -> int:
        async with self.store.transaction() as db:
            count = await db.scalar(
                sa.select(sa.func.count()).select_from(users).where(users.c.revoked_at.is_(None))
            )
        return int(count or 0)
