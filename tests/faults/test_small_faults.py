"""Small faults met by a real ``typewriter serve`` process: clients that leave mid-body, the
modes of the files it keeps, and a stream asked for again after a restart.

Every server here is its own process on a loopback port (``replicas``), spoken to
with raw sockets or httpx, and its own output is what the assertions read.
"""

from __future__ import annotations

import asyncio
import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from helpers import add_user, ask, follow, last, typewriter_cli
from replicas import Replica, Replicas

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

BODY_PATHS = ("/v1/chat", "/v1/chat/completions", "/v1/conversations")
LEAVERS = 50


@pytest.fixture
def usual_umask() -> Iterator[None]:
    """The umask most systems give (022): files would be world-readable unless made private."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def leave_mid_body(port: int, path: str) -> None:
    """Promise 1,000 bytes of body, send 10, and hang up."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n".encode()
            + b'{"message"'
        )


def access_lines(output: str, paths: tuple[str, ...]) -> list[str]:
    return [line for line in output.splitlines() if any(f"POST {p} " in line for p in paths)]


async def test_clients_leaving_mid_body_leave_one_short_line_each_and_no_traceback(
    replicas: Replicas,
) -> None:
    replica = await replicas.start()
    before = len(replica.output())
    for i in range(LEAVERS):
        await asyncio.to_thread(leave_mid_body, replica.port, BODY_PATHS[i % len(BODY_PATHS)])
    async with asyncio.timeout(20):
        while len(access_lines(replica.output()[before:], BODY_PATHS)) < LEAVERS:
            await asyncio.sleep(0.05)
    async with httpx.AsyncClient(base_url=replica.url) as client:
        assert (await client.get("/healthz")).status_code == 200
    await asyncio.sleep(0.2)  # anything logged late would show now

    logged = replica.output()[before:]
    assert "Traceback" not in logged, logged[:3000]
    assert "ERROR" not in logged, logged[:3000]
    lines = [line for line in logged.splitlines() if "GET /healthz" not in line]
    assert len(lines) == LEAVERS, logged[:3000]  # the access log's line, nothing more
    assert all(len(line) < 200 for line in lines)
    assert all(" 0 " in line for line in lines), lines[:3]  # status 0: the client left
    for path in BODY_PATHS:
        assert any(f"POST {path} 0 " in line for line in lines), path


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def database_files(data_dir: Path) -> list[Path]:
    return [data_dir / name for name in ("typewriter.db", "typewriter.db-wal", "typewriter.db-shm")]


@pytest.mark.usefixtures("usual_umask")
async def test_the_data_typewriter_creates_is_for_its_user_alone(tmp_path: Path) -> None:
    """``users add`` and then ``serve`` on a data directory that did not exist."""
    data_dir = tmp_path / "new" / "data"
    add_user(data_dir, "alice")
    assert mode(data_dir) == 0o700
    assert mode(data_dir / "typewriter.db") == 0o600

    served = Replicas(data_dir)
    try:
        await served.start()  # with a user: auth on, so the ticket secret is made at start
        files = [*database_files(data_dir), data_dir / "ticket-secret"]
        assert {path.name: oct(mode(path)) for path in files} == {
            path.name: oct(0o600) for path in files
        }
    finally:
        served.stop_all()


@pytest.mark.usefixtures("usual_umask")
async def test_serve_makes_a_missing_data_dir_private(tmp_path: Path) -> None:
    data_dir = tmp_path / "served" / "data"
    served = Replicas(data_dir)
    try:
        replica = await served.start()
        assert mode(data_dir) == 0o700
        assert {path.name: oct(mode(path)) for path in database_files(data_dir)} == {
            path.name: oct(0o600) for path in database_files(data_dir)
        }
        assert "open to other users" not in replica.output()
    finally:
        served.stop_all()


@pytest.mark.usefixtures("usual_umask")
async def test_a_data_dir_others_can_read_is_left_alone_and_named_once(tmp_path: Path) -> None:
    """An operator's modes are theirs to choose: a warning, not a silent chmod."""
    data_dir = tmp_path / "shared"
    add_user(data_dir, "alice")
    data_dir.chmod(0o755)
    (data_dir / "typewriter.db").chmod(0o644)

    listed = typewriter_cli("users", "list", "--data-dir", str(data_dir))
    assert listed.returncode == 0, listed.stderr
    assert f"chmod 700 {data_dir.resolve()}" in listed.stderr
    assert f"chmod 600 {data_dir.resolve() / 'typewriter.db'}" in listed.stderr

    served = Replicas(data_dir)
    try:
        replica = await served.start()
        output = replica.output()
        assert output.count(f"chmod 600 {data_dir.resolve() / 'typewriter.db'}") == 1, output
        assert mode(data_dir) == 0o755
        assert mode(data_dir / "typewriter.db") == 0o644
    finally:
        served.stop_all()


async def test_a_stream_from_before_a_restart_is_gone_for_its_owner_and_unknown_to_others(
    tmp_path: Path,
) -> None:
    alice, bob = add_user(tmp_path, "alice"), add_user(tmp_path, "bob")
    servers = Replicas(tmp_path)  # the memory broker: streams live in the process
    try:
        first = await servers.start()
        async with client_of(first, alice) as client:
            started = await ask(client, "before the restart", assistant="echo")
            events = await follow(client, started["events_url"])
            assert last(events, "end")["finish_reason"] == "stop"
        first.terminate()

        second: Replica = await servers.start()
        events_path = f"/v1/streams/{started['stream_id']}/events"
        async with client_of(second, alice) as owner, client_of(second, bob) as other:
            gone = await owner.get(events_path)
            unknown = await other.get(events_path)
            never = await owner.get("/v1/streams/st_neverseenneverseen/events")
    finally:
        servers.stop_all()
    assert gone.status_code == 410, gone.text
    assert gone.json()["error"]["code"] == "stream_expired"
    assert unknown.status_code == 404, unknown.text
    assert unknown.json()["error"]["code"] == "stream_not_found"
    assert never.status_code == 404, never.text


def client_of(replica: Replica, key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=replica.url, headers={"authorization": f"Bearer {key}"}, timeout=30
    )


async def test_without_a_store_a_stream_from_before_a_restart_stays_unknown(
    replicas: Replicas,
) -> None:
    first = await replicas.start(database_url="none")
    async with httpx.AsyncClient(base_url=first.url, timeout=30) as client:
        started = await ask(client, "kept nowhere", assistant="echo")
        await follow(client, started["events_url"])
    first.terminate()
    second = await replicas.start(database_url="none")
    async with httpx.AsyncClient(base_url=second.url, timeout=30) as client:
        response = await client.get(f"/v1/streams/{started['stream_id']}/events")
    assert response.status_code == 404, response.text
