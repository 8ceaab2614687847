"""``typewriter keys``: rotating a user's keys through the real CLI, against a real server.

A key added to a user signs in as that same user (its conversations included);
a revoked key is refused once the server's few seconds of cached lookups end,
while the user's other key keeps working. No listing ever shows a key.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
from pathlib import Path

import httpx
import pytest

from conftest import ServerFactory
from helpers import add_user, ask, follow, text_of, typewriter_cli
from typewriter.api.auth import CACHE_SECONDS

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

KEY_ID = re.compile(r"\bkey_[0-9A-Za-z_-]+")


def keys(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return typewriter_cli("keys", *args, "--data-dir", str(data_dir))


def add_key(data_dir: Path, name: str) -> tuple[str, str]:
    """A key added with ``keys add``: its id (from stderr) and the key (the whole of stdout)."""
    done = keys(data_dir, "add", name)
    assert done.returncode == 0, done.stderr
    key = done.stdout.strip()
    assert key.startswith("tw_") and len(key) > 40 and key not in done.stderr
    assert name in done.stderr
    (key_id,) = KEY_ID.findall(done.stderr)
    return key_id, key


def user_ids(data_dir: Path) -> list[str]:
    listed = typewriter_cli("users", "list", "--data-dir", str(data_dir))
    assert listed.returncode == 0, listed.stderr
    return [line.split("\t")[1] for line in listed.stdout.splitlines()]


def listed_keys(data_dir: Path, name: str, *secrets: str) -> dict[str, str]:
    """``keys list``: each key id and the rest of its line; none of ``secrets`` anywhere."""
    done = keys(data_dir, "list", name)
    assert done.returncode == 0, done.stderr
    for secret in secrets:
        assert secret not in done.stdout and secret not in done.stderr
    found = {}
    for line in done.stdout.splitlines():
        key_id, rest = line.split("\t", 1)
        assert KEY_ID.fullmatch(key_id), line
        found[key_id] = rest
    return found


def test_keys_add_list_revoke_keep_the_user(tmp_path: Path) -> None:
    first = add_user(tmp_path, "alice")
    before = user_ids(tmp_path)
    second_id, second = add_key(tmp_path, "alice")
    assert second != first and user_ids(tmp_path) == before  # the same one user
    listed = listed_keys(tmp_path, "alice", first, second)
    assert second_id in listed and len(listed) == 2
    assert all("never used" in rest and "live" in rest for rest in listed.values())
    (first_id,) = set(listed) - {second_id}
    revoked = keys(tmp_path, "revoke", "alice", first_id)
    assert revoked.returncode == 0 and first_id in revoked.stdout, revoked.stderr
    listed = listed_keys(tmp_path, "alice", first, second)
    assert "revoked" in listed[first_id] and "live" in listed[second_id]
    assert "1 key(s)" in typewriter_cli("users", "list", "--data-dir", str(tmp_path)).stdout


def test_an_unknown_user_or_key_is_one_line_and_exit_2(tmp_path: Path) -> None:
    add_user(tmp_path, "bob")
    (bobs_key,) = listed_keys(tmp_path, "bob")
    add_user(tmp_path, "carol")
    for args, says in [
        (("add", "nobody"), "no active user"),
        (("list", "nobody"), "no active user"),
        (("revoke", "nobody", bobs_key), "no active user"),
        (("revoke", "carol", bobs_key), "no live key"),
        (("revoke", "bob", "key_missing"), "no live key"),
    ]:
        done = keys(tmp_path, *args)
        assert done.returncode == 2, (args, done.stderr)
        assert says in done.stderr and len(done.stderr.splitlines()) == 1, done.stderr
        assert done.stdout == ""
    assert keys(tmp_path, "revoke", "bob", bobs_key).returncode == 0
    again = keys(tmp_path, "revoke", "bob", bobs_key)
    assert again.returncode == 2 and "no live key" in again.stderr


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


async def status(client: httpx.AsyncClient, key: str) -> int:
    return (await client.get("/v1/conversations", headers=bearer(key))).status_code


async def test_a_rotated_key_signs_in_as_the_same_user_and_the_old_one_stops(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    old = add_user(tmp_path, "dave")
    server = make_server(data_dir=tmp_path)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        client.headers.update(bearer(old))
        started = await ask(client, "before the rotation", assistant="echo")
        assert text_of(await follow(client, started["events_url"])) != ""
        new_id, new = add_key(tmp_path, "dave")  # while the server runs
        client.headers.update(bearer(new))
        mine = await client.get(f"/v1/conversations/{started['conversation_id']}")
        assert mine.status_code == 200, mine.text  # the old key's conversation, not orphaned
        listed = listed_keys(tmp_path, "dave", old, new)
        assert all(re.search(r"\bused \d{4}-\d\d-\d\d", rest) for rest in listed.values())

        (old_id,) = set(listed) - {new_id}
        assert keys(tmp_path, "revoke", "dave", old_id).returncode == 0
        async with asyncio.timeout(CACHE_SECONDS + 5):  # the server's cached lookup runs out
            while await status(client, old) != 401:
                await asyncio.sleep(0.05)  # poll interval: the cache's expiry sends no event
        assert await status(client, new) == 200
        assert await status(client, old) == 401
