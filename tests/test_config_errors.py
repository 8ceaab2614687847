"""A wrong setting stops ``typewriter serve`` with one line naming it, exit status 2.

Each case runs the real command (``python -m typewriter serve``) and checks
what an operator sees: a single line on stderr, nothing on stdout, no
traceback. A read-only data directory is a read-only tmpfs mount: the tests
run as root here, and root writes through a 0555 directory; where mounting is
not allowed they fall back to a 0555 directory (enough for any other user).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import free_port

SECONDS = 60


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "typewriter", *args],
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        capture_output=True,
        text=True,
        timeout=SECONDS,
    )


def assert_one_line(done: subprocess.CompletedProcess[str], *says: str) -> str:
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith("typewriter: "), line
    for part in says:
        assert part in line, line
    return line


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory nobody, root included, can write into."""
    target = tmp_path / "read-only"
    target.mkdir()
    mounted = os.geteuid() == 0 and (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(target)],
            capture_output=True,
        ).returncode
        == 0
    )
    if not mounted:
        target.chmod(0o555)
    try:
        yield target
    finally:
        if mounted:
            subprocess.run(["umount", str(target)], check=True)
        else:
            target.chmod(0o755)


@pytest.mark.integration
def test_an_unreachable_database_is_one_line() -> None:
    url = f"postgresql+asyncpg://app:pw@127.0.0.1:{free_port()}/typewriter"
    line = assert_one_line(run("serve", "--port", "0", "--database-url", url), "database_url")
    assert "127.0.0.1" in line and "pw" not in line


@pytest.mark.integration
@pytest.mark.parametrize("url", ["postgresql://app@127.0.0.1/x", "mysql://app@127.0.0.1/x"])
def test_a_database_url_without_an_async_driver_says_which_form_works(url: str) -> None:
    assert_one_line(
        run("serve", "--port", "0", "--database-url", url),
        "invalid setting database_url",
        "postgresql+asyncpg://",
    )


@pytest.mark.integration
def test_a_read_only_data_dir_is_one_line(read_only_dir: Path) -> None:
    for data_dir in (read_only_dir, read_only_dir / "below"):
        line = assert_one_line(
            run("serve", "--port", "0", "--data-dir", str(data_dir)), "data_dir", str(data_dir)
        )
        assert "not writable" in line
    assert_one_line(run("users", "add", "alice", "--data-dir", str(read_only_dir)), "data_dir")


@pytest.mark.integration
def test_an_unknown_log_level_is_one_line() -> None:
    assert_one_line(run("serve", "--log-level", "loud"), "invalid setting log_level", "'loud'")


@pytest.mark.integration
def test_bad_json_in_a_variable_is_one_line() -> None:
    assert_one_line(
        run("serve", env={"TYPEWRITER_UPSTREAMS": '[{"name": "a",'}),
        "invalid setting upstreams",
        "TYPEWRITER_UPSTREAMS",
        "JSON",
    )


@pytest.mark.integration
@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (("--port", "70000"), {}, "invalid setting port"),
        (("--grace", "soon"), {}, "invalid setting grace"),
        ((), {"TYPEWRITER_MAX_BODY_BYTES": "0"}, "invalid setting max_body_bytes"),
        ((), {"TYPEWRITER_RETRY": '{"deadline": 0}'}, "invalid setting retry.deadline"),
        (("--log-format", "xml"), {}, "invalid setting log_format"),
    ],
)
def test_any_invalid_value_is_one_line(
    args: tuple[str, ...], env: dict[str, str], says: str
) -> None:
    assert_one_line(run("serve", *args, env=env), says)


@pytest.mark.integration
def test_help_shows_the_platform_data_dir_as_the_default(tmp_path: Path) -> None:
    env = {"XDG_DATA_HOME": str(tmp_path)}
    clean = {k: v for k, v in os.environ.items() if k != "TYPEWRITER_DATA_DIR"}
    done = subprocess.run(
        [sys.executable, "-m", "typewriter", "serve", "--help"],
        env={**clean, "COLUMNS": "250", **env},
        capture_output=True,
        text=True,
        timeout=SECONDS,
    )
    assert done.returncode == 0, done.stderr
    shown = " ".join(done.stdout.replace("│", " ").split())
    assert f"[default: {tmp_path / 'typewriter'}]" in shown


@pytest.mark.integration
def test_a_missing_postgresql_database_is_one_line(postgres_url: str) -> None:
    missing = postgres_url.rsplit("/", 1)[0] + "/no_such_database"
    line = assert_one_line(run("serve", "--port", "0", "--database-url", missing), "database_url")
    assert "no_such_database" in line


@pytest.mark.integration
def test_with_auth_on_a_data_dir_that_cannot_keep_the_ticket_secret_is_one_line(
    postgres_url: str, read_only_dir: Path
) -> None:
    added = run("users", "add", "alice", "--database-url", postgres_url)
    assert added.returncode == 0, added.stderr
    served = run(
        "serve", "--port", "0", "--database-url", postgres_url, "--data-dir", str(read_only_dir)
    )
    line = assert_one_line(
        served,
        "data_dir",
        "ticket_secret",
    )
    assert str(read_only_dir) in line
