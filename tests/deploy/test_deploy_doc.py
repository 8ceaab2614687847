"""docs/deploy.md's recipes, run as written: the systemd unit and the PostgreSQL SQL.

Each test reads its block from the document, so a recipe that stops working
fails here, not on an operator's machine. What a test machine cannot hold as
written (the unit's ``/opt`` paths, the password that a ``trust`` test
cluster does not check) is replaced, and the replacement is asserted, so a
document that changes shape fails loudly instead of testing nothing.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from databases import PostgresServer, run_async
from helpers import free_port
from nginx_proxy import start_site
from replicas import Replicas

pytestmark = [pytest.mark.integration]
anyio = pytest.mark.anyio

DEPLOY_DOC = Path(__file__).resolve().parents[2] / "docs" / "deploy.md"
TYPEWRITER = Path(sys.executable).parent / "typewriter"


def documented_block(language: str, containing: str) -> str:
    """The one ``language`` code block of docs/deploy.md that contains ``containing``."""
    pattern = rf"^```{language}\n(.*?)^```"
    blocks = re.findall(pattern, DEPLOY_DOC.read_text(), re.MULTILINE | re.DOTALL)
    matching = [block for block in blocks if containing in block]
    assert len(matching) == 1, f"expected one {language} block with {containing!r}"
    block: str = matching[0]
    return block


def replaced(text: str, old: str, new: str) -> str:
    assert old in text, f"the documented block should contain {old!r}"
    return text.replace(old, new)


def unit_settings(unit: str, key: str) -> list[str]:
    return re.findall(rf"^{key}=(.*)$", unit, re.MULTILINE)


def test_the_systemd_unit_verifies_and_its_command_serves_and_stops_within_its_timeout(
    tmp_path: Path,
) -> None:
    """``systemd-analyze verify`` accepts the unit as documented (paths made local), and the
    command it starts, with the environment it gives, serves ``/readyz`` and stops on
    ``SIGTERM`` well within ``TimeoutStopSec``."""
    systemd_analyze = shutil.which("systemd-analyze")
    assert systemd_analyze, "systemd-analyze is part of Debian's systemd package"
    unit = documented_block("ini", "ExecStart=")
    env_file = tmp_path / "env"
    config_file = tmp_path / "typewriter.toml"
    port = free_port()
    env_file.write_text("TYPEWRITER_TICKET_SECRET=a-secret-for-this-test\n")
    config_file.write_text(f'port = {port}\ndata_dir = "{tmp_path / "data"}"\n')
    unit = replaced(unit, "/opt/typewriter/bin/typewriter", str(TYPEWRITER))
    unit = replaced(unit, "/etc/typewriter/env", str(env_file))
    unit = replaced(unit, "/etc/typewriter/typewriter.toml", str(config_file))
    unit_file = tmp_path / "typewriter.service"
    unit_file.write_text(unit)

    verified = subprocess.run(
        [systemd_analyze, "verify", str(unit_file)], capture_output=True, text=True, timeout=60
    )
    assert verified.returncode == 0 and verified.stderr.strip() == "", verified.stderr

    # What systemd would run: ExecStart with Environment= and EnvironmentFile= applied.
    env = {k: v for k, v in os.environ.items() if not k.startswith("TYPEWRITER_")}
    for setting in unit_settings(unit, "Environment"):
        name, _, value = setting.partition("=")
        env[name] = value
    for path in unit_settings(unit, "EnvironmentFile"):
        for line in Path(path).read_text().splitlines():
            name, _, value = line.partition("=")
            env[name] = value
    (command,) = unit_settings(unit, "ExecStart")
    (stop_timeout,) = unit_settings(unit, "TimeoutStopSec")
    output = (tmp_path / "output").open("wb")
    process = subprocess.Popen(command.split(), env=env, stdout=output, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, (tmp_path / "output").read_text()
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                if ready.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the unit's command never became ready"
            time.sleep(0.05)
        assert ready.json()["ready"] is True
        stopping = time.monotonic()
        process.send_signal(signal.SIGTERM)
        process.wait(float(stop_timeout))
        # systemd counts an exit by SIGTERM as clean, as it does 0 (SuccessExitStatus).
        assert process.returncode in (0, -signal.SIGTERM), process.returncode
        assert time.monotonic() - stopping < float(stop_timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        output.close()


def test_the_postgresql_sql_makes_a_role_that_migrates_and_serves_as_documented(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    """The documented SQL, run as the superuser, gives a role that is not a superuser and
    owns its database: ``typewriter users add`` migrates the schema as that role, and a
    server on that URL answers and keeps the conversation (the order of docs' steps)."""
    if not postgres_server.running:
        postgres_server.start()
    sql = documented_block("sql", "CREATE ROLE typewriter")
    statements = [s.strip() for s in sql.split(";") if s.strip()]
    assert any(s.startswith("CREATE DATABASE typewriter OWNER typewriter") for s in statements)
    try:
        for statement in statements:  # CREATE DATABASE cannot run inside a transaction block
            postgres_server.execute(statement)
        assert _is_superuser(postgres_server, "typewriter") is False
        url = (
            f"postgresql+asyncpg://typewriter:CHANGE-ME@{postgres_server.host}:"
            f"{postgres_server.port}/typewriter"
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("TYPEWRITER_")}
        env["TYPEWRITER_DATABASE_URL"] = url
        env["TYPEWRITER_DATA_DIR"] = str(tmp_path)
        added = subprocess.run(
            [sys.executable, "-m", "typewriter", "users", "add", "alice"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert added.returncode == 0, added.stderr
        key = added.stdout.strip().splitlines()[-1]
        assert key.startswith("tw_"), added.stdout

        port = free_port()
        server_output = (tmp_path / "server-output").open("wb")
        server = subprocess.Popen(
            [sys.executable, "-m", "typewriter", "serve", "--port", str(port)],
            env=env,
            stdout=server_output,
            stderr=subprocess.STDOUT,
        )
        try:
            headers = {"authorization": f"Bearer {key}"}
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
                deadline = time.monotonic() + 30
                while True:
                    assert server.poll() is None, (tmp_path / "server-output").read_text()
                    try:
                        if client.get("/readyz").status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    assert time.monotonic() < deadline, "the server never became ready"
                    time.sleep(0.05)
                answer = client.post(
                    "/v1/chat",
                    json={"message": "kept in PostgreSQL", "assistant": "echo"},
                    headers={**headers, "accept": "text/event-stream"},
                )
                assert answer.status_code == 200, answer.text
                listed = client.get("/v1/conversations", headers=headers).json()
            titles = [conversation["title"] for conversation in listed["data"]]
            assert titles == ["kept in PostgreSQL"]
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(30)
            server_output.close()
        owners = _table_owners(postgres_server, "typewriter")
        assert owners and owners == {"typewriter"}, owners
    finally:
        postgres_server.execute("DROP DATABASE IF EXISTS typewriter WITH (FORCE)")
        postgres_server.execute("DROP ROLE IF EXISTS typewriter")


def _is_superuser(server: PostgresServer, role: str) -> bool:
    async def query() -> bool:
        import asyncpg

        connection = await asyncpg.connect(server.admin_url, timeout=10)
        try:
            value: bool = await connection.fetchval(
                "SELECT rolsuper FROM pg_roles WHERE rolname = $1", role
            )
            return value
        finally:
            await connection.close()

    return run_async(query)


def _table_owners(server: PostgresServer, database: str) -> set[str]:
    """The owners of the tables in ``database``'s public schema."""

    async def query() -> set[str]:
        import asyncpg

        dsn = f"postgresql://{server.user}@{server.host}:{server.port}/{database}"
        connection = await asyncpg.connect(dsn, timeout=10)
        try:
            rows = await connection.fetch(
                "SELECT tableowner FROM pg_tables WHERE schemaname = 'public'"
            )
            return {row["tableowner"] for row in rows}
        finally:
            await connection.close()

    return run_async(query)


@anyio
async def test_the_tls_block_streams_an_answer_over_http2_event_by_event(
    replicas: Replicas, tmp_path: Path
) -> None:
    """The documented TLS server (with the documented upstream block) in front of a replica,
    with a self-signed certificate: an answer arrives over HTTP/2 event by event, plain
    HTTP is redirected to HTTPS, and ``/metrics`` is not served on the public address."""
    replica = await replicas.start()
    certificate, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    made = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-keyout", str(key), "-out", str(certificate), "-subj", f"/CN={SERVER_NAME}"]
        + ["-addext", f"subjectAltName=DNS:{SERVER_NAME}"],
        capture_output=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    tls_port, plain_port = free_port(), free_port()
    upstream = re.search(
        r"^upstream typewriter \{.*?^\}",
        documented_block("nginx", "upstream typewriter"),
        re.MULTILINE | re.DOTALL,
    )
    assert upstream is not None, "the documented nginx block should define `upstream typewriter`"
    upstream_block, servers = re.subn(
        r"^(\s*)server \S+:\d+;$", rf"\1server 127.0.0.1:{replica.port};", upstream[0], flags=re.M
    )
    assert servers >= 1
    tls = documented_block("nginx", "listen 443 ssl")
    tls = replaced(tls, "listen 443 ssl http2;", f"listen 127.0.0.1:{tls_port} ssl http2;")
    tls = replaced(tls, "listen 80;", f"listen 127.0.0.1:{plain_port};")
    tls = replaced(tls, f"/etc/letsencrypt/live/{SERVER_NAME}/fullchain.pem", str(certificate))
    tls = replaced(tls, f"/etc/letsencrypt/live/{SERVER_NAME}/privkey.pem", str(key))
    proxy = start_site(tmp_path / "nginx", f"{upstream_block}\n{tls}", tls_port, "https")
    try:
        base = f"https://{SERVER_NAME}:{tls_port}"
        curl = ["curl", "--silent", "--show-error", "--http2", "--cacert", str(certificate)]
        curl += ["--resolve", f"{SERVER_NAME}:{tls_port}:127.0.0.1"]
        question = {
            "message": "".join(f"<{i:02d}>" for i in range(20)),
            "assistant": "echo",
            "options": {"simulate": {"tokens_per_second": 20}},
        }
        arrivals = await asyncio.to_thread(
            _lines_as_they_arrive,
            [*curl, "--no-buffer", "--write-out", "\nhttp_version=%{http_version}\n"]
            + ["-H", "accept: text/event-stream", "-H", "content-type: application/json"]
            + ["--data", json.dumps(question), f"{base}/v1/chat"],
        )
        lines = [line for _, line in arrivals]
        assert lines[-1] == "http_version=2", lines[-3:]
        deltas = [at for at, line in arrivals if line == "event: delta"]
        assert len(deltas) == 20 and "event: end" in lines
        # 20 pieces at 20 a second: a proxy holding the answer back would deliver them at once.
        assert deltas[-1] - deltas[0] > 0.6, deltas

        redirect = subprocess.run(
            ["curl", "--silent", "--output", "/dev/null"]
            + ["--write-out", "%{http_code} %{redirect_url}", "-H", f"host: {SERVER_NAME}"]
            + [f"http://127.0.0.1:{plain_port}/v1/assistants"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert redirect.stdout == f"301 https://{SERVER_NAME}/v1/assistants", redirect.stdout
        metrics = subprocess.run(
            [*curl, "--output", "/dev/null", "--write-out", "%{http_code}", f"{base}/metrics"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert metrics.stdout == "404", metrics.stdout + metrics.stderr
    finally:
        proxy.stop()


SERVER_NAME = "chat.example.com"


def _lines_as_they_arrive(command: list[str]) -> list[tuple[float, str]]:
    """Each line ``command`` prints, with the time it was read."""
    lines: list[tuple[float, str]] = []
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
        assert process.stdout is not None
        for raw in process.stdout:
            lines.append((time.monotonic(), raw.decode().rstrip("\n")))
        errors = process.stderr.read().decode() if process.stderr else ""
    assert process.returncode == 0, errors
    return lines
