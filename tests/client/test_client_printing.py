"""``ask_and_print`` (``typewriter chat QUESTION``) over the new client: the answer as typed,
and an unreachable server as one line that names it."""

from __future__ import annotations

import pytest

from conftest import RunningServer
from helpers import free_port
from typewriter.client import ask_and_print

pytestmark = pytest.mark.integration


def test_the_answer_is_printed_as_typed(
    server: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert ask_and_print(server.url, "say [b]this[/b] back", assistant="echo") == 0
    out, err = capsys.readouterr()
    assert out == "say [b]this[/b] back\n" and err == ""


def test_an_unreachable_server_is_one_line_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    assert ask_and_print(url, "hi") == 1
    out, err = capsys.readouterr()
    assert out == "" and err == f"typewriter: cannot reach {url}: connection refused\n"


def test_a_refused_question_says_why(
    server: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert ask_and_print(server.url, "hi", assistant="nope") == 1
    err = capsys.readouterr().err
    assert err.startswith("typewriter: 422 invalid_field: ") and "nope" in err
    assert err.count("\n") == 1  # one line, however long: never wrapped
