"""Users and their API keys: a key is shown once, only its hash is kept.

A user's id (``usr_…``) is what every stream, conversation and message records
as its owner, so renaming or reusing a name never hands one user's history to
another. Revoking a user revokes all of its keys; nothing is deleted, so an
audit can still tell who owned what.

A user may hold several keys, so a key is rotated without a new user: add the
new key, move the clients to it, revoke the old one; the user's id, and with it
every conversation, stays. Only one active user may hold a name: the database
decides (``schema.active_user_names``), so two ``users add`` racing each other
cannot both win.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import secrets
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from typewriter.errors import InvalidField, NotFound, StoreUnavailable
from typewriter.ids import new_id
from typewriter.store.database import Database
from typewriter.store.schema import api_keys, users

__all__ = ["KEY_PREFIX", "LAST_USE_EVERY", "ApiKey", "User", "UserStore", "hash_key"]

KEY_PREFIX = "tw_"
# A key's last use is written at most this often (seconds): enough to tell a key in use from
# one forgotten, without a write for every lookup of a busy key.
LAST_USE_EVERY = 60.0
_IDS_PER_QUERY = 500
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")


@dataclass(frozen=True, slots=True)
class User:
    id: str
    name: str
    created_at: float
    revoked_at: float | None
    keys: int


@dataclass(frozen=True, slots=True)
class ApiKey:
    """What may be shown of a key: never the key, nor its hash."""

    id: str
    user_id: str
    created_at: float
    last_used_at: float | None
    revoked_at: float | None


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
        user_id = new_id("usr")
        taken = InvalidField(
            f"a user named {name!r} exists already",
            fields=[{"field": "name", "message": "taken"}],
        )
        try:  # the unique index on active names decides, even between racing adds
            async with self.store.transaction() as db:
                await db.execute(users.insert().values(id=user_id, name=name, created_at=now))
                _, key = await _insert_key(db, user_id, now)
        except sa.exc.IntegrityError:
            raise taken from None
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
            row = await _active_user(db, name)
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
                    sa.select(users.c.id, api_keys.c.id.label("key_id"), api_keys.c.last_used_at)
                    .select_from(api_keys.join(users, users.c.id == api_keys.c.user_id))
                    .where(
                        api_keys.c.hash == hash_key(key),
                        api_keys.c.revoked_at.is_(None),
                        users.c.revoked_at.is_(None),
                    )
                )
            ).first()
        if row is None:
            return None
        now = time.time()
        if row.last_used_at is None or now - row.last_used_at >= LAST_USE_EVERY:
            # Bookkeeping, in a transaction of its own: a write that fails (a database busy
            # or gone just now) must not turn away a caller whose key was just found good.
            with contextlib.suppress(StoreUnavailable):
                async with self.store.transaction() as db:
                    await db.execute(
                        api_keys.update()
                        .where(api_keys.c.id == row.key_id)
                        .values(last_used_at=now)
                    )
        return str(row.id)

    async def is_active(self, user_id: str) -> bool:
        async with self.store.transaction() as db:
            row = (
                await db.execute(
                    sa.select(users.c.id).where(users.c.id == user_id, users.c.revoked_at.is_(None))
                )
            ).first()
        return row is not None

    async def active_among(self, user_ids: Collection[str]) -> set[str]:
        """Which of these users are still active: one round trip for many (in chunks that
        stay under the databases' limits on bound parameters)."""
        ids = sorted(user_ids)
        found: set[str] = set()
        async with self.store.transaction() as db:
            for start in range(0, len(ids), _IDS_PER_QUERY):
                chunk = ids[start : start + _IDS_PER_QUERY]
                rows = await db.execute(
                    sa.select(users.c.id).where(users.c.id.in_(chunk), users.c.revoked_at.is_(None))
                )
                found.update(str(row.id) for row in rows)
        return found

    async def active_count(self) -> int:
        async with self.store.transaction() as db:
            count = await db.scalar(
                sa.select(sa.func.count()).select_from(users).where(users.c.revoked_at.is_(None))
            )
        return int(count or 0)

    async def add_key(self, name: str) -> tuple[ApiKey, str]:
        """Another key for the active user of that name; returned here and never again."""
        now = time.time()
        async with self.store.transaction() as db:
            user = await _active_user(db, name)
            key_id, key = await _insert_key(db, user.id, now)
        return ApiKey(key_id, user.id, now, None, None), key

    async def keys(self, name: str) -> Sequence[ApiKey]:
        """Every key of the active user of that name, revoked ones too, oldest first."""
        async with self.store.transaction() as db:
            user = await _active_user(db, name)
            rows = await db.execute(
                sa.select(api_keys)
                .where(api_keys.c.user_id == user.id)
                .order_by(api_keys.c.created_at, api_keys.c.id)
            )
            return [_api_key(row) for row in rows]

    async def revoke_key(self, name: str, key_id: str) -> ApiKey:
        """Revoke one live key of the active user of that name; its other keys keep working."""
        now = time.time()
        async with self.store.transaction() as db:
            user = await _active_user(db, name)
            row = (
                await db.execute(
                    sa.select(api_keys).where(
                        api_keys.c.id == key_id,
                        api_keys.c.user_id == user.id,
                        api_keys.c.revoked_at.is_(None),
                    )
                )
            ).first()
            if row is None:
                raise NotFound(
                    f"user {name!r} has no live key {key_id[:80]!r}", code="key_not_found"
                )
            await db.execute(
                api_keys.update().where(api_keys.c.id == key_id).values(revoked_at=now)
            )
        return ApiKey(row.id, row.user_id, row.created_at, row.last_used_at, now)


async def _active_user(db: AsyncConnection, name: str) -> sa.Row[Any]:
    row = (
        await db.execute(sa.select(users).where(users.c.name == name, users.c.revoked_at.is_(None)))
    ).first()
    if row is None:
        raise NotFound(f"no active user named {name[:80]!r}", code="user_not_found")
    return row


async def _insert_key(db: AsyncConnection, user_id: str, now: float) -> tuple[str, str]:
    """A new key for ``user_id``: its id, and the key itself, of which only a hash is kept."""
    key_id, key = new_id("key"), KEY_PREFIX + secrets.token_urlsafe(32)
    await db.execute(
        api_keys.insert().values(
            id=key_id, user_id=user_id, hash=hash_key(key), prefix=key[:10], created_at=now
        )
    )
    return key_id, key


def _api_key(row: sa.Row[Any]) -> ApiKey:
    return ApiKey(row.id, row.user_id, row.created_at, row.last_used_at, row.revoked_at)
