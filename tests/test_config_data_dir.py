"""One database, whatever the current directory: the platform's data directory.

``users add`` (the documented first step) may create the database and says
where; every other ``users`` and ``keys`` command names the database it used and
refuses to create one, so a command run with the wrong data directory cannot
start a second, empty database that the server never reads.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ServerFactory

pytestmark = pytest.mark.integration


def cli(cwd: Path, data_home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``typewriter`` run in ``cwd`` with only the platform default to find its data."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TYPEWRITER_")}
    env["XDG_DATA_HOME"] = str(data_home)
    return subprocess.run(
        [sys.executable, "-m", "typewriter", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_users_added_in_one_directory_are_listed_from_another(tmp_path: Path) -> None:
    data_home, here, there = tmp_path / "share", tmp_path / "here", tmp_path / "there"
    here.mkdir()
    there.mkdir()
    database = data_home / "typewriter" / "typewriter.db"

    added = cli(here, data_home, "users", "add", "alice")
    assert added.returncode == 0, added.stderr
    assert f"created database {database}" in added.stderr
    assert database.is_file()

    listed = cli(there, data_home, "users", "list")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.startswith("alice\t")
    assert f"database: {database}" in listed.stderr

    again = cli(there, data_home, "users", "add", "bob")
    assert f"database: {database}" in again.stderr and "created" not in again.stderr
    assert list(here.iterdir()) == [] and list(there.iterdir()) == []  # no ./data anywhere


@pytest.mark.parametrize(
    "args",
    [
        ("users", "list"),
        ("users", "revoke", "alice"),
        ("keys", "add", "alice"),
        ("keys", "list", "alice"),
        ("keys", "revoke", "alice", "key_x"),
    ],
)
def test_other_commands_refuse_to_create_a_database(tmp_path: Path, args: tuple[str, ...]) -> None:
    data_home = tmp_path / "share"
    done = cli(tmp_path, data_home, *args)
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert f"no database at {data_home / 'typewriter' / 'typewriter.db'}" in line
    assert "typewriter users add NAME" in line
    assert not (data_home / "typewriter" / "typewriter.db").exists()


def test_an_error_names_the_database_too(tmp_path: Path) -> None:
    data_home = tmp_path / "share"
    assert cli(tmp_path, data_home, "users", "add", "alice").returncode == 0
    done = cli(tmp_path, data_home, "keys", "list", "nobody")
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert "nobody" in line and str(data_home / "typewriter" / "typewriter.db") in line


def test_serve_creates_its_data_dir_and_database(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    data_dir = tmp_path / "fresh" / "machine"
    make_server(data_dir=data_dir)
    assert (data_dir / "typewriter.db").is_file()
