"""Pytest fixtures for tests against real databases: a SQLite file and a PostgreSQL server.

Registered in ``tests/conftest.py`` with ``pytest_plugins = ["upstream.fixtures", "databases"]``.

``database_url`` (function scope, parametrized ``sqlite`` / ``postgresql``)
    An SQLAlchemy async URL to an empty database of the test's own, so a store test written once
    runs against both backends: ``sqlite+aiosqlite:///<tmp_path>/typewriter.db``, or
    ``postgresql+asyncpg://postgres@127.0.0.1:<port>/tw_<random>``, a database created for the
    test on the session's server and dropped (``WITH (FORCE)``) after it. It is a plain sync
    fixture, usable from sync tests and from ``@pytest.mark.anyio`` tests alike.
``postgres_server`` (session scope)
    The :class:`PostgresServer` behind the ``postgresql`` URLs: ``host``, ``port``, ``admin_url``
    (an asyncpg DSN for the ``postgres`` database, as superuser), ``url(database)``, ``stop()``
    and ``start()``. A test that stops it (to see the application meet a database that is down)
    must start it again in a ``finally``; the port stays the same, so URLs handed out before still
    work once it is back. Should a test leave it stopped all the same, the next ``database_url``
    starts it again. To run a test against one backend only, narrow the parameter:
    ``@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)``.
``run_async(make_coroutine)``
    Runs async code (asyncpg, an async engine) to completion from sync code, on a loop in a
    thread of its own, whether or not the calling thread runs an event loop.

The server is a throwaway cluster: ``initdb`` into a fresh temp dir (in memory, ``/dev/shm``,
when it has room), trust authentication, one loopback TCP port picked free at start, its Unix
socket in that same dir (never the system's ``/var/run/postgresql``), and ``fsync`` and
``full_page_writes`` off, as nothing in it has to survive a crash of the machine (commits stay
synchronous: they survive ``stop()``). It starts only when a test asks for a ``postgresql`` URL,
so ``-k sqlite`` runs need no PostgreSQL at all.

The binaries come from Debian's ``postgresql`` package (``/usr/lib/postgresql/<version>/bin``;
``TYPEWRITER_PG_BINDIR`` points elsewhere). ``make test`` installs them first through
``scripts/ensure-test-services.sh``; when they are missing the PostgreSQL tests fail (not skip)
saying so, as a skipped backend would let store bugs through unnoticed.

Nothing is left running: the session fixture stops the server and deletes its dir in a
``finally``, an ``atexit`` hook does the same if fixture teardown never ran, and a small watchdog
process in a session of its own does it when this process dies without either (SIGKILL, say):
it waits for end of file on a pipe that only this process holds open.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest

T = TypeVar("T")

BINDIR_ENV = "TYPEWRITER_PG_BINDIR"
BINDIR_GLOB = "/usr/lib/postgresql/*/bin"
REQUIRED_PROGRAMS = ("initdb", "postgres", "pg_isready")
MISSING_MESSAGE = (
    "PostgreSQL server binaries not found ({where}). The PostgreSQL variants of the database "
    "tests need them: run `make test`, or `scripts/ensure-test-services.sh` once, which installs "
    "Debian's postgresql package (or set {env} to a directory holding initdb and postgres)."
)
SERVER_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    # Nothing here has to survive a crash of the machine: skip the work that makes it survive one.
    "fsync": "off",
    "full_page_writes": "off",
    # But a commit must survive a crash of the server, which is what stop() stages: with
    # synchronous_commit off, the last ~200 ms of commits sit in WAL buffers that an immediate
    # stop throws away, and tables a test just created are gone after start(). With fsync off a
    # synchronous commit costs only a write() into the page cache.
    "synchronous_commit": "on",
}


class PostgresUnavailable(RuntimeError):
    """The PostgreSQL binaries are missing, or the server could not be set up or started."""


def find_bindir() -> Path:
    """The directory with PostgreSQL's server programs; the newest installed version wins."""
    override = os.environ.get(BINDIR_ENV)
    if override:
        candidates = [Path(override)]
        where = f"{BINDIR_ENV}={override}"
    else:
        found = (Path(path) for path in Path("/").glob(BINDIR_GLOB.lstrip("/")))
        candidates = sorted(found, key=_version_key, reverse=True)
        where = f"looked for {', '.join(REQUIRED_PROGRAMS)} in {BINDIR_GLOB}"
    for candidate in candidates:
        if all((candidate / program).is_file() for program in REQUIRED_PROGRAMS):
            return candidate
    raise PostgresUnavailable(MISSING_MESSAGE.format(where=where, env=BINDIR_ENV))


def _version_key(bindir: Path) -> tuple[int, str]:
    version = bindir.parent.name
    return (int(version) if version.isdigit() else -1, version)


def run_async(make_coroutine: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion on a fresh event loop in a thread of its own.

    The fixtures are sync so that sync and anyio tests can both use them; a thread keeps their
    asyncpg calls off whatever event loop the calling thread may be running (or have set as
    current), so the caller's loop is neither needed nor disturbed.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="databases") as pool:
        return pool.submit(lambda: asyncio.run(make_coroutine())).result()


def _scratch_parent() -> str | None:
    """``/dev/shm`` when it has room, else the default temp dir.

    In memory, ``initdb`` and ``CREATE DATABASE`` do not wait on the disk: here that halves
    set-up (0.9 s to 0.5 s) and takes a database from 40 ms (up to 250 ms while the disk was
    busy) to about 20 ms. Docker's default ``/dev/shm`` (64 MB) is too small for a cluster.
    """
    shm = Path("/dev/shm")
    try:
        if os.access(shm, os.W_OK) and shutil.disk_usage(shm).free >= 1 << 30:
            return str(shm)
    except OSError:
        pass
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# Started in a session of its own, so that neither Ctrl-C nor a kill of the whole process group
# takes it down before it has done its job. Its stdin is a pipe whose write end only the test
# process holds: end of file there means that process is gone (or done), and then whatever
# postmaster still runs in the dir is stopped the way `pg_ctl stop -m immediate` does, and the
# dir removed.
_WATCHDOG = r"""
import os, shutil, signal, sys, time
root = sys.argv[1]
signal.signal(signal.SIGINT, signal.SIG_IGN)
sys.stdin.buffer.read()
pidfile = os.path.join(root, "data", "postmaster.pid")

def ours(pid):
    # Running (a zombie is not) and serving this dir: never signal a pid reused by another.
    try:
        with open(f"/proc/{pid}/stat") as file:
            state = file.read().rsplit(")", 1)[1].split()[0]
        with open(f"/proc/{pid}/cmdline", "rb") as file:
            command = file.read()
    except (OSError, IndexError):
        return False
    return state not in "ZX" and root.encode() in command

try:
    with open(pidfile) as file:
        pid = int(file.readline())
except (OSError, ValueError):
    pid = 0
if pid > 0 and ours(pid):
    try:
        os.kill(pid, signal.SIGQUIT)
        deadline = time.monotonic() + 10
        while ours(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        if ours(pid):
            os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
shutil.rmtree(root, ignore_errors=True)
"""


class PostgresServer:
    """A throwaway PostgreSQL cluster in a temp dir, serving on a loopback port.

    PostgreSQL refuses to run as root; as root, ``initdb`` and ``postgres`` run as the
    ``postgres`` system user that Debian's package creates (``Popen(user=...)``, which is what
    ``runuser -u postgres --`` does without the PAM session and the extra process), and the dir
    is handed to that user. The dir comes from :func:`tempfile.mkdtemp` (in ``/dev/shm`` when
    possible), not pytest's ``tmp_path_factory``, whose base is private to the user running
    pytest.

    ``postgres`` runs as a direct child, so its exit is seen at once (a port taken meanwhile, a
    crash during start) and it is reaped here, and it stays in pytest's process group, so
    whatever kills the whole group kills it too.
    """

    host = "127.0.0.1"
    user = "postgres"

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._owner = _owner_kwargs()
        self.root = Path(tempfile.mkdtemp(prefix="typewriter-pg-", dir=_scratch_parent()))
        self.datadir = self.root / "data"
        self.logfile = self.root / "postgres.log"
        self._env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
        self._watchdog: subprocess.Popen[bytes] | None = subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, str(self.root)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        atexit.register(self.close)
        if "user" in self._owner:
            os.chown(self.root, self._owner["user"], self._owner["group"])

    # --- what tests use ---------------------------------------------------------------------

    @property
    def admin_url(self) -> str:
        """An asyncpg DSN for the ``postgres`` database, as the superuser ``postgres``."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/postgres"

    def url(self, database: str) -> str:
        """The SQLAlchemy async URL of ``database`` on this server."""
        return f"postgresql+asyncpg://{self.user}@{self.host}:{self.port}/{database}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 30.0) -> None:
        """Start the server (again) on its port and wait until it accepts connections."""
        if self.running:
            raise PostgresUnavailable("PostgreSQL server already running")
        if not self.port:
            raise PostgresUnavailable("PostgreSQL server not set up: call setup() first")
        self._start(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop at once, as ``pg_ctl stop -m immediate`` does (SIGQUIT to the postmaster).

        Open connections break, new ones are refused until :meth:`start`; what was committed
        is kept (the next start recovers it from the WAL).
        """
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGQUIT)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def create_database(self) -> str:
        """Create an empty database with a random ``tw_`` name and return the name."""
        name = f"tw_{secrets.token_hex(6)}"
        self.execute(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        """Drop ``name``, ending any connection still open to it."""
        self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def execute(self, sql: str) -> None:
        """Run one statement on the ``postgres`` database, as the superuser."""

        async def execute() -> None:
            connection = await asyncpg.connect(self.admin_url, timeout=10)
            try:
                await connection.execute(sql)
            finally:
                await connection.close()

        run_async(execute)

    # --- set-up and tear-down ---------------------------------------------------------------

    def setup(self, timeout: float = 60.0) -> None:
        """``initdb``, then start on a free port (another if that one is taken meanwhile)."""
        self._run(
            [
                self.bindir / "initdb",
                f"--pgdata={self.datadir}",
                f"--username={self.user}",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ]
        )
        for attempt in range(5):
            self.port = _free_port()
            try:
                self._start(timeout)
                return
            except _PortTaken:
                if attempt == 4:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Stop the server and delete its dir; safe to call more than once."""
        atexit.unregister(self.close)
        try:
            self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
            watchdog, self._watchdog = self._watchdog, None
            if watchdog is not None and watchdog.stdin is not None:
                watchdog.stdin.close()  # end of file: it finds nothing left to do and exits
                try:
                    watchdog.wait(10)
                except subprocess.TimeoutExpired:
                    watchdog.kill()
                    watchdog.wait()

    def _start(self, timeout: float) -> None:
        settings = {
            **SERVER_SETTINGS,
            "port": str(self.port),
            "unix_socket_directories": str(self.root),
        }
        command: list[str | Path] = [self.bindir / "postgres", "-D", self.datadir]
        for name, value in settings.items():
            command += ["-c", f"{name}={value}"]
        log_start = self.logfile.stat().st_size if self.logfile.exists() else 0
        with self.logfile.open("ab") as log:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.root,
                env=self._env,
                **self._owner,
            )
        deadline = time.monotonic() + timeout
        while not self._ready():
            if self.process.poll() is not None:
                self.process = None
                log_text = self._log(log_start)
                if "could not bind" in log_text or "could not create any TCP/IP" in log_text:
                    raise _PortTaken(log_text)
                raise PostgresUnavailable(f"postgres exited during start:\n{log_text}")
            if time.monotonic() > deadline:
                self.stop()
                raise PostgresUnavailable(
                    f"postgres did not accept connections within {timeout} s:\n"
                    + self._log(log_start)
                )
            time.sleep(0.01)  # poll interval: pg_isready answers within milliseconds once up

    def _ready(self) -> bool:
        """Whether the server accepts connections (not merely listens: it may be recovering)."""
        probe = subprocess.run(
            [
                self.bindir / "pg_isready",
                "--quiet",
                f"--host={self.host}",
                f"--port={self.port}",
                f"--username={self.user}",
                "--dbname=postgres",
                "--timeout=5",
            ],
            env=self._env,
            check=False,
        )
        return probe.returncode == 0

    def _run(self, command: list[str | Path]) -> None:
        result = subprocess.run(
            command,
            cwd=self.root,
            env=self._env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=False,
            **self._owner,
        )
        if result.returncode != 0:
            output = (result.stdout + result.stderr).decode(errors="replace")
            raise PostgresUnavailable(f"{Path(command[0]).name} failed:\n{output}")

    def _log(self, start: int) -> str:
        try:
            with self.logfile.open("rb") as log:
                log.seek(start)
                return log.read().decode(errors="replace")
        except OSError:
            return ""


class _PortTaken(PostgresUnavailable):
    """Another process took the port between picking it and the server binding it."""


def _owner_kwargs() -> dict[str, Any]:
    """``Popen`` arguments that drop root to the ``postgres`` user; none when not root."""
    if os.geteuid() != 0:
        return {}
    try:
        account = pwd.getpwnam("postgres")
    except KeyError:
        raise PostgresUnavailable(
            "running as root, PostgreSQL needs the `postgres` system user, which Debian's "
            "postgresql package creates: run `make test` or `scripts/ensure-test-services.sh`"
        ) from None
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The session's PostgreSQL server, started on first use and gone at session end.

    A test that calls ``stop()`` must call ``start()`` in a ``finally``.
    """
    try:
        server = PostgresServer(find_bindir())
    except PostgresUnavailable as error:
        pytest.fail(str(error), pytrace=False)
    try:
        server.setup()
        yield server
    finally:
        server.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An SQLAlchemy async URL to a new, empty database: a SQLite file or a PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'typewriter.db'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    if not server.running:  # an earlier test stopped it and did not start it again
        server.start()
    name = server.create_database()
    try:
        yield server.url(name)
    finally:
        # Down after the test (it stopped the server and left it so, or Ctrl-C reached it): the
        # database goes when the cluster does, and the next test's set-up starts the server.
        if server.running:
            server.drop_database(name)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A PostgreSQL database of this test's own: for replicas (which cannot share a SQLite
    file) and for outages staged by stopping the server."""
    if not postgres_server.running:  # an earlier test stopped it and did not start it again
        postgres_server.start()
    name = postgres_server.create_database()
    try:
        yield postgres_server.url(name)
    finally:
        if postgres_server.running:
            postgres_server.drop_database(name)
