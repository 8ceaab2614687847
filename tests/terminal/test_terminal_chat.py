"""``typewriter chat`` at a prompt, in a real pseudo-terminal: what a person sees and what
the server keeps.

Each test reads the emulated screen (pyte) and then the stored conversation
through the API: the text on the screen is the text stored.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from conftest import RunningServer, ServerFactory
from terminal.pty_chat import Terminals
from terminal.stored_chat import conversations, pace, stored, words
from upstream import shapes
from upstream.control import Upstream

pytest_plugins = ["terminal.chat_fixtures"]

pytestmark = pytest.mark.integration


def test_a_conversation_of_two_turns(
    server: RunningServer, terminals: Terminals, tmp_path: Path
) -> None:
    term = terminals("--url", server.url, "-a", "echo")
    term.wait_text(f"typewriter chat on {server.url}")
    first, second = "alpha bravo charlie", "delta echo foxtrot golf"
    row = term.ask(first)
    term.wait_next_prompt()
    assert term.rows_between(row, term.screen.cursor.y) == [first]
    row = term.ask(second)
    term.wait_next_prompt()
    assert term.rows_between(row, term.screen.cursor.y) == [second]
    term.ctrl_d()
    assert term.exit_code() == 0
    assert "Traceback" not in term.raw

    [conversation] = conversations(server.url)  # both turns went into one conversation
    messages = stored(server.url, conversation["id"])
    assert [(m["role"], m["text"]) for m in messages] == [
        ("user", first),
        ("assistant", first),
        ("user", second),
        ("assistant", second),
    ]
    assert [m["finish_reason"] for m in messages if m["role"] == "assistant"] == ["stop", "stop"]
    history = tmp_path / "state" / "typewriter" / "chat_history"  # the prompt's, for ↑
    assert history.read_text().splitlines()[-2:] == [first, second]
    assert history.stat().st_mode & 0o777 == 0o600  # it holds the questions: its owner's only
    again = terminals("--url", server.url)
    again.wait_prompt()
    again.child.send("\x1b[A")  # ↑: the last question of the session before
    again.wait_text(f"(?m)^> {second}$")
    again.ctrl_c()
    assert again.exit_code() == 0


def test_ctrl_c_mid_answer_stops_it_on_the_server(
    server: RunningServer, terminals: Terminals
) -> None:
    question = words(100)  # 500 characters at 20 pieces of 4 a second: 6 s, stopped long before
    term = terminals("--url", server.url, "-a", "echo", "--options", pace(20))
    row = term.ask(question)
    term.wait_rows(row, "w008")
    term.ctrl_c()
    term.wait_next_prompt()
    shown = term.rows_between(row, term.screen.cursor.y)
    assert shown[-1] == "stopped"
    shown_words = " ".join(shown[:-1]).split()
    assert 8 < len(shown_words) < 100
    row = term.ask("after the stop")  # back at the prompt, in the same conversation
    term.wait_next_prompt()
    assert term.rows_between(row, term.screen.cursor.y) == ["after the stop"]
    term.ctrl_c()  # at the prompt: leave
    assert term.exit_code() == 0
    assert "Traceback" not in term.raw

    [conversation] = conversations(server.url)
    first_answer, second_answer = [
        m for m in stored(server.url, conversation["id"]) if m["role"] == "assistant"
    ]
    assert first_answer["finish_reason"] == "cancelled"
    assert first_answer["text"].split() == shown_words  # what was shown is what is kept
    assert second_answer["finish_reason"] == "stop"
    assert second_answer["text"] == "after the stop"


def test_slash_commands(server: RunningServer, terminals: Terminals) -> None:
    term = terminals("--url", server.url, rows=60)

    def command(line: str) -> list[str]:
        row = term.ask(line)
        term.wait_next_prompt()
        return term.rows_between(row, term.screen.cursor.y)

    assert command("/assistant nope")[0] == "typewriter: no assistant 'nope' here"
    assert command("/assistant echo") == ["assistant: echo"]
    assert command("one") == ["one"]
    assert command("/regenerate") == ["one"]
    [first] = conversations(server.url)
    assert command("/new") == ["new conversation: the next question starts it"]
    assert command("two") == ["two"]
    listed = command("/conversations")
    assert listed[0].split() == ["id", "title", "assistant", "updated"]
    second = next(c for c in conversations(server.url) if c["id"] != first["id"])
    assert [row.split()[:3] for row in listed[1:]] == [
        [second["id"], "two", "echo"],
        [first["id"], "one", "echo"],
    ]
    switched = command(f"/conversations {first['id']}")  # its branch: a question, an answer
    assert switched[0] == f"conversation {first['id']}: one (2 messages)"
    assert command("three") == ["three"]
    assert command("/bogus") == ["typewriter: no command /bogus: /help lists them"]
    assert command("//etc is a question") == ["/etc is a question"]
    assert "/regenerate" in "\n".join(command("/help"))
    term.ask("/quit")
    assert term.exit_code() == 0

    def texts(conversation_id: str) -> list[tuple[str, str]]:
        return [(m["role"], m["text"]) for m in stored(server.url, conversation_id)]

    assert texts(first["id"]) == [
        ("user", "one"),
        ("assistant", "one"),
        ("assistant", "one"),  # regenerated: a second answer to the same question
        ("user", "three"),
        ("assistant", "three"),
        ("user", "/etc is a question"),
        ("assistant", "/etc is a question"),
    ]
    assert texts(second["id"]) == [("user", "two"), ("assistant", "two")]


def test_reasoning_is_shown_apart_and_the_answer_as_markdown(
    make_server: ServerFactory, upstream: Upstream, terminals: Terminals
) -> None:
    server = make_server(
        upstreams=[{"name": "u", "base_url": upstream.base_url}],
        assistants=[{"name": "thinker", "model": "test-model"}],
    )
    thinking, answer = ["Let me ", "think."], ["The ", "**answer** ", "is 42."]
    upstream.script({"chunks": shapes.vllm_reasoning(thinking, answer)})
    term = terminals("--url", server.url, "-a", "thinker")
    row = term.ask("why?")
    term.wait_next_prompt()
    assert term.rows_between(row, term.screen.cursor.y) == ["Let me think.", "The answer is 42."]
    reasoning, shown = term.screen.buffer[row], term.screen.buffer[row + 1]
    assert all(reasoning[x].italics for x in range(len("Let me think.")))  # dim italic
    assert not shown[0].italics
    bold = [shown[x].bold for x in range(len("The answer is 42."))]
    assert bold == [False] * 4 + [True] * 6 + [False] * 7  # Markdown, rendered
    term.ctrl_d()
    assert term.exit_code() == 0

    upstream.script({"chunks": shapes.vllm_reasoning(thinking, answer)})
    piped = subprocess.run(  # not a terminal: the answer's text only, as the model wrote it
        [sys.executable, "-m", "typewriter", "chat", "--url", server.url, "-a", "thinker", "why?"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (piped.returncode, piped.stdout) == (0, "The **answer** is 42.\n")


def test_continue_follows_an_answer_still_being_written(
    server: RunningServer, terminals: Terminals
) -> None:
    question = words(30)
    # it starts typing in 4 s, once `chat -c` is surely up (it takes 1-2 s to start)
    options = {"simulate": {"tokens_per_second": 100, "first_token_delay_ms": 4000}}
    body = {"message": question, "assistant": "echo", "options": options}
    started = httpx.post(f"{server.url}/v1/chat", json=body, timeout=10).json()
    term = terminals("--url", server.url, "-c")
    term.wait_text("its answer is still being written: following it")
    term.wait_prompt()
    row = term.lines().index("(its answer is still being written: following it)") + 1
    assert " ".join(term.rows_between(row, term.screen.cursor.y)) == question
    term.ctrl_d()
    assert term.exit_code() == 0
    [answer] = [
        m for m in stored(server.url, started["conversation_id"]) if m["role"] == "assistant"
    ]
    assert (answer["text"], answer["finish_reason"]) == (question, "stop")
