"""``typewriter chat`` in a real pseudo-terminal when the network or the server fails.

A connection cut mid-answer resumes by itself with the text exact; Ctrl+C while
the network is down still leaves the answer in one line (and the server stops it
on its own); a server gone away is one line naming its URL and exit code 3.
Never a traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from conftest import RunningServer
from helpers import free_port
from tcp_proxy import TcpProxy
from terminal.pty_chat import Terminals
from terminal.stored_chat import conversations, pace, stored, words

pytest_plugins = ["terminal.chat_fixtures"]

pytestmark = pytest.mark.integration


@pytest.fixture
def proxy(server: RunningServer) -> Iterator[TcpProxy]:
    """A proxy in front of the gateway that can cut every connection to it."""
    port = int(server.url.rsplit(":", 1)[1])
    front = TcpProxy("127.0.0.1", port)
    try:
        yield front
    finally:
        front.close()


def _answer_of(url: str) -> dict[str, Any]:
    [conversation] = conversations(url)
    answers = [m for m in stored(url, conversation["id"]) if m["role"] == "assistant"]
    return answers[-1]


def test_a_cut_mid_answer_resumes_with_the_text_exact(
    server: RunningServer, proxy: TcpProxy, terminals: Terminals
) -> None:
    question = words(60)  # 300 characters at 40 pieces of 4 a second: about 2 s
    term = terminals("--url", f"http://{proxy.address}", "-a", "echo", "--options", pace(40))
    row = term.ask(question)
    term.wait_rows(row, "w005")
    proxy.cut()
    assert _answer_of(server.url)["status"] == "streaming"  # cut mid-answer, not after it
    proxy.restore()
    term.wait_next_prompt()
    shown = term.rows_between(row, term.screen.cursor.y)
    assert " ".join(shown) == question  # no gap, no repeat
    term.ctrl_d()
    assert term.exit_code() == 0
    assert "Traceback" not in term.raw
    answer = _answer_of(server.url)
    assert (answer["text"], answer["finish_reason"]) == (question, "stop")


def test_ctrl_c_while_the_network_is_down_is_one_line(
    server: RunningServer, proxy: TcpProxy, terminals: Terminals
) -> None:
    url = f"http://{proxy.address}"
    term = terminals("--url", url, "-a", "echo", "--options", pace(20))
    row = term.ask(words(100))
    term.wait_rows(row, "w004")
    proxy.cut()  # and it stays cut: the cancel cannot be sent either
    term.wait_rows(row, r"\(waiting for the server; Ctrl\+C stops\)")  # never frozen
    term.ctrl_c()  # while the client waits to reconnect
    term.wait_next_prompt()
    said = " ".join(term.rows_between(row, term.screen.cursor.y)).split("typewriter: ")
    assert len(said) == 2  # one line, wrapped on the screen
    assert said[1].startswith(f"stopped here, but the server was not told: cannot reach {url}")
    shown = said[0].split()
    assert _answer_of(server.url)["status"] == "streaming"  # it goes on (for `grace`)

    proxy.restore()  # the network is back: the next question stops it first
    row = term.ask("again")
    term.wait_next_prompt()
    assert term.rows_between(row, term.screen.cursor.y) == [
        "(the answer stopped earlier is stopped on the server now)",
        "again",
    ]
    term.ctrl_d()
    assert term.exit_code() == 0
    assert "Traceback" not in term.raw
    [conversation] = conversations(server.url)
    first, second = [m for m in stored(server.url, conversation["id"]) if m["reply_to"]]
    assert first["finish_reason"] == "cancelled"
    assert first["text"].split()[: len(shown)] == shown  # and more, written while cut off
    assert (second["text"], second["finish_reason"]) == ("again", "stop")


def test_the_server_going_away_is_one_line_and_exit_code_3(
    server: RunningServer, terminals: Terminals
) -> None:
    term = terminals("--url", server.url, "-a", "echo")
    row = term.ask("still there?")
    term.wait_next_prompt()
    assert term.rows_between(row, term.screen.cursor.y) == ["still there?"]
    server.stop()
    row = term.ask("and now?")
    assert term.exit_code() == 3
    said = term.rows_between(row, len(term.lines()))
    assert said[0].startswith(f"typewriter: cannot reach {server.url}: ")  # refused, or reset
    assert said[1].startswith("conversation conv_")  # where to go on from
    assert "Traceback" not in term.raw


def test_a_question_for_a_server_that_is_not_there(tmp_path: object) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    done = subprocess.run(
        [sys.executable, "-m", "typewriter", "chat", "--url", url, "hello?"],
        capture_output=True,
        text=True,
        timeout=30,
        env={k: v for k, v in os.environ.items() if not k.startswith("TYPEWRITER_")},
    )
    assert done.returncode == 3
    assert done.stdout == ""
    assert done.stderr.splitlines() == [f"typewriter: cannot reach {url}: connection refused"]
