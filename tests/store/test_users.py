"""Users and their keys on both engines: rotation keeps the user, names stay unique."""

from __future__ import annotations

import asyncio
import time

import pytest
import sqlalchemy as sa

from typewriter.errors import InvalidField, NotFound
from typewriter.store.schema import users
from typewriter.store.sql import SqlStore
from typewriter.store.users import UserStore

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


async def insert_user(store: SqlStore, user_id: str, name: str, revoked_at: float | None) -> None:
    """A row straight into ``users``, past the check ``UserStore.add`` makes in code."""
    async with store.transaction() as db:
        await db.execute(
            users.insert().values(
                id=user_id, name=name, created_at=time.time(), revoked_at=revoked_at
            )
        )


async def test_the_database_refuses_a_second_active_user_of_one_name(store: SqlStore) -> None:
    await insert_user(store, "usr_1", "dana", revoked_at=None)
    with pytest.raises(sa.exc.IntegrityError):
        await insert_user(store, "usr_2", "dana", revoked_at=None)
    await insert_user(store, "usr_3", "erin", revoked_at=time.time())
    await insert_user(store, "usr_4", "erin", revoked_at=None)  # a revoked user frees its name
    names = [user.name for user in await UserStore(store).list() if user.revoked_at is None]
    assert sorted(names) == ["dana", "erin"]


async def waiting_for_a_row_lock(store: SqlStore) -> bool:
    async with store.transaction() as db:
        query = sa.text(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'transactionid' AND NOT granted"
        )
        return bool((await db.execute(query)).scalar_one())


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_an_add_racing_another_fails_cleanly_at_the_index(store: SqlStore) -> None:
    # The other add has inserted "fay" but not committed: this add's check finds no "fay",
    # its insert waits on the index, and fails once the other commits.
    async with store.engine.connect() as other:
        await other.begin()
        await other.execute(users.insert().values(id="usr_other", name="fay", created_at=0.0))
        racing = asyncio.create_task(UserStore(store).add("fay"))
        async with asyncio.timeout(10):
            while not await waiting_for_a_row_lock(store):
                await asyncio.sleep(0.01)  # poll interval: pg_locks has no event to wait on
        await other.commit()
    with pytest.raises(InvalidField, match="exists already"):
        await racing
    assert [user.id for user in await UserStore(store).list()] == ["usr_other"]


async def test_added_keys_rotate_without_a_new_user(store: SqlStore) -> None:
    accounts = UserStore(store)
    user, first = await accounts.add("gail")
    added, second = await accounts.add_key("gail")
    assert added.user_id == user.id and second != first
    assert await accounts.user_for_key(first) == user.id
    assert await accounts.user_for_key(second) == user.id
    keys = await accounts.keys("gail")
    assert [key.id for key in keys][1] == added.id and len(keys) == 2
    assert all(key.last_used_at is not None and key.revoked_at is None for key in keys)
    revoked = await accounts.revoke_key("gail", keys[0].id)
    assert revoked.revoked_at is not None
    assert await accounts.user_for_key(first) is None
    assert await accounts.user_for_key(second) == user.id
    assert [(u.id, u.keys) for u in await accounts.list()] == [(user.id, 1)]
    assert [key.revoked_at is None for key in await accounts.keys("gail")] == [False, True]


async def test_last_use_is_written_once_a_minute_at_most(store: SqlStore) -> None:
    accounts = UserStore(store)
    _, key = await accounts.add("hana")
    assert [k.last_used_at for k in await accounts.keys("hana")] == [None]
    await accounts.user_for_key(key)
    (first_use,) = [k.last_used_at for k in await accounts.keys("hana")]
    assert first_use is not None and first_use <= time.time()
    await accounts.user_for_key(key)
    assert [k.last_used_at for k in await accounts.keys("hana")] == [first_use]


async def test_unknown_users_and_keys_are_not_found(store: SqlStore) -> None:
    accounts = UserStore(store)
    await accounts.add("ivy")
    await accounts.add("jon")
    (jons_key,) = await accounts.keys("jon")
    for attempt in [
        accounts.add_key("nobody"),
        accounts.keys("nobody"),
        accounts.revoke_key("nobody", jons_key.id),
        accounts.revoke_key("ivy", jons_key.id),  # another user's key
        accounts.revoke_key("ivy", "key_missing"),
    ]:
        with pytest.raises(NotFound):
            await attempt
    await accounts.revoke_key("jon", jons_key.id)
    with pytest.raises(NotFound, match="no live key"):
        await accounts.revoke_key("jon", jons_key.id)
    await accounts.revoke("ivy")
    with pytest.raises(NotFound, match="no active user"):
        await accounts.add_key("ivy")
