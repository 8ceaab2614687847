"""The command line: settings from flags, environment and TOML; `typewriter chat` end to end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import RunningServer, ServerFactory
from helpers import sigint_as_in_a_terminal
from typewriter.cli import app
from typewriter.config import load_settings
from typewriter.models.simulated import CANNED_ANSWER
from upstream.control import Upstream


def test_serve_help_lists_every_setting() -> None:
    result = CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for flag in [
        "--host",
        "--port",
        "--heartbeat",
        "--grace",
        "--retention",
        "--first-token-timeout",
        "--idle-timeout",
        "--config",
    ]:
        assert flag in result.output


def test_settings_precedence_flag_over_env_over_toml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    toml = tmp_path / "typewriter.toml"
    toml.write_text("port = 9001\nheartbeat = 3.5\ngrace = 7\nretention = 60\n")
    monkeypatch.setenv("TYPEWRITER_HEARTBEAT", "4.5")
    monkeypatch.setenv("TYPEWRITER_GRACE", "8")
    settings = load_settings(toml, grace=9.0)
    assert settings.port == 9001  # from the file
    assert settings.heartbeat == 4.5  # env beats the file
    assert settings.grace == 9.0  # the flag beats both
    assert settings.retention == 60
    assert load_settings().heartbeat == 4.5


def test_a_bad_setting_is_refused_with_its_name(tmp_path: Path) -> None:
    toml = tmp_path / "bad.toml"
    toml.write_text("heartbeet = 3\n")
    result = CliRunner().invoke(app, ["serve", "--config", str(toml)])
    assert result.exit_code != 0
    assert "heartbeet" in result.output
    missing = CliRunner().invoke(app, ["serve", "--config", str(tmp_path / "none.toml")])
    assert missing.exit_code != 0 and "no such file" in missing.output
    broker = CliRunner().invoke(app, ["serve", "--broker", "carrier-pigeon"])
    assert broker.exit_code == 2 and "carrier-pigeon" in broker.output


def _typewriter(*args: str) -> list[str]:
    return [sys.executable, "-m", "typewriter", *args]


def _chat(url: str, question: str) -> subprocess.CompletedProcess[str]:
    """``typewriter chat`` naming no assistant, in a terminal wide enough for any line."""
    return subprocess.run(
        _typewriter("chat", "--url", url, question),
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "500"},
    )


@pytest.mark.integration
def test_chat_command_types_the_answer(server: RunningServer) -> None:
    done = _chat(server.url, "what is SSE?")
    assert done.returncode == 0, done.stderr
    assert done.stdout == CANNED_ANSWER + "\n"


@pytest.mark.integration
def test_chat_command_reports_errors(server: RunningServer) -> None:
    done = subprocess.run(
        _typewriter("chat", "--url", server.url, "--assistant", "nope", "hi"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "nope" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.integration
def test_ctrl_c_in_chat_stops_generating(server: RunningServer) -> None:
    # echo types this back at 50 pieces of 4 characters a second: 20 s, so Ctrl+C always
    # comes while it is still typing, however loaded the machine
    question = "".join(f"{i:04d}" for i in range(1000))
    process = subprocess.Popen(
        _typewriter("chat", "--url", server.url, "--assistant", "echo", question),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=sigint_as_in_a_terminal,
    )
    assert process.stdout is not None
    first = process.stdout.read(20)  # the answer has started typing
    assert first
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130
    assert "stopped" in err
    shown = first + out
    assert question.startswith(shown.rstrip("\n")) and len(shown) < len(question)
    streams = server.gateway.broker._streams  # type: ignore[attr-defined]
    pause = threading.Event()
    for _ in range(1000):  # the cancel was accepted (202); its `end` follows within moments
        ends = [s.entries[-1][2] for s in streams.values() if s.finished]
        if any('"finish_reason":"cancelled"' in end for end in ends):
            break
        pause.wait(0.01)
    else:
        raise AssertionError("the stream did not end cancelled")


@pytest.mark.integration
def test_chat_command_asks_the_servers_default(
    make_server: ServerFactory, upstream: Upstream
) -> None:
    """No --assistant: the server decides, so a gateway serving only its own assistants
    (no 'default' among them) answers too."""
    server = make_server(
        upstreams=[{"name": "u", "base_url": upstream.base_url}],
        assistants=[{"name": "mine", "model": "test-model"}],
    )
    done = _chat(server.url, "what is SSE?")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "Hello from the test upstream.\n"
