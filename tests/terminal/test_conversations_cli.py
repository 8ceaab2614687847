"""``typewriter conversations`` and ``typewriter chat`` from scripts: pipes, not terminals.

Output for a pipe is plain (tab-separated rows, the answer's exact text); the
export is byte for byte the server's own, the one the page downloads.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from conftest import RunningServer, ServerFactory
from helpers import add_user, free_port
from terminal.stored_chat import conversations, stored, words

pytest_plugins = ["terminal.chat_fixtures"]

pytestmark = pytest.mark.integration


def typewriter(
    *args: str, stdin: str | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """The real command, its output a pipe, with only the ``TYPEWRITER_*`` variables given."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TYPEWRITER_")}
    return subprocess.run(
        [sys.executable, "-m", "typewriter", *args],
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        timeout=30,
        env={**clean, "COLUMNS": "200", **env},
    )


def _ask(url: str, question: str, conversation_id: str | None = None) -> str:
    """One answered question (echo); returns its conversation's id."""
    body: dict[str, object] = {"message": question, "assistant": "echo"}
    if conversation_id:
        body["conversation_id"] = conversation_id
    with httpx.Client(base_url=url, timeout=10) as http:
        started = http.post("/v1/chat", json=body).json()
        with http.stream("GET", started["events_url"]) as events:
            events.read()
    return str(started["conversation_id"])


def test_stdin_and_the_url_variable(server: RunningServer) -> None:
    done = typewriter("chat", "-a", "echo", stdin="from a [b]pipe[/b]\n", TYPEWRITER_URL=server.url)
    assert (done.returncode, done.stdout, done.stderr) == (0, "from a [b]pipe[/b]\n", "")
    dash = typewriter("chat", "-a", "echo", "-", stdin="dash", TYPEWRITER_URL=server.url)
    assert (dash.returncode, dash.stdout) == (0, "dash\n")
    empty = typewriter("chat", "--url", server.url, stdin="\n")
    assert empty.returncode == 2 and "nothing to ask" in empty.stderr


def test_continue_asks_into_the_newest_conversation(server: RunningServer) -> None:
    older = _ask(server.url, "older")
    newer = _ask(server.url, "newer")
    done = typewriter("chat", "--url", server.url, "-a", "echo", "-c", "again")
    assert (done.returncode, done.stdout) == (0, "again\n")
    given = typewriter("chat", "--url", server.url, "-a", "echo", "--conversation", older, "back")
    assert (given.returncode, given.stdout) == (0, "back\n")
    assert [m["text"] for m in stored(server.url, newer)] == ["newer"] * 2 + ["again"] * 2
    assert [m["text"] for m in stored(server.url, older)] == ["older"] * 2 + ["back"] * 2
    unknown = typewriter("chat", "--url", server.url, "--conversation", "conv_nope", "hi")
    assert unknown.returncode == 1 and "conversation_not_found" in unknown.stderr
    assert "Traceback" not in unknown.stderr


def test_list_assistants(server: RunningServer) -> None:
    done = typewriter("chat", "--url", server.url, "--list-assistants")
    assert done.returncode == 0
    names = [line.split("\t")[0] for line in done.stdout.splitlines()]
    assert names == ["default", "echo"]
    assert "(default)" in done.stdout.splitlines()[0]


def test_list_and_show(server: RunningServer) -> None:
    first = _ask(server.url, "the first one")
    second = _ask(server.url, "a **second** one")
    listed = typewriter("conversations", "list", "--url", server.url)
    assert listed.returncode == 0, listed.stderr
    rows = [line.split("\t") for line in listed.stdout.splitlines()]
    assert [(r[0], r[1], r[2]) for r in rows] == [
        (second, "a second one", "echo"),
        (first, "the first one", "echo"),
    ]

    found = typewriter("conversations", "list", "--url", server.url, "--search", "SECOND")
    assert [line.split("\t")[0] for line in found.stdout.splitlines()] == [second]

    shown = typewriter("conversations", "show", first, "--url", server.url)
    assert shown.returncode == 0
    assert shown.stdout.splitlines()[:3] == ["# the first one", "", "## You"]
    assert "## Assistant (echo)" in shown.stdout and shown.stdout.count("the first one") == 3


def test_export_is_the_pages_file(server: RunningServer, tmp_path: Path) -> None:
    second = _ask(server.url, "a **second** one")
    page = httpx.get(f"{server.url}/v1/conversations/{second}/export", params={"format": "json"})
    out = tmp_path / "second.json"
    exported = typewriter(
        "conversations", "export", second, "--url", server.url, "-f", "json", "-o", str(out)
    )
    assert exported.returncode == 0, exported.stderr
    assert out.read_bytes() == page.content  # the same file as the page's Export
    markdown = httpx.get(f"{server.url}/v1/conversations/{second}/export").text
    md = typewriter("conversations", "export", second, "--url", server.url)
    assert md.stdout == markdown
    assert json.loads(out.read_text())["id"] == second


def test_delete_asks_first(server: RunningServer) -> None:
    first = _ask(server.url, "the first one")
    second = _ask(server.url, "a **second** one")
    kept = typewriter("conversations", "delete", first, "--url", server.url, stdin="n\n")
    assert kept.returncode == 1 and len(conversations(server.url)) == 2
    gone = typewriter("conversations", "delete", first, "--url", server.url, "--yes")
    assert gone.returncode == 0
    assert [c["id"] for c in conversations(server.url)] == [second]
    again = typewriter("conversations", "show", first, "--url", server.url)
    assert again.returncode == 1
    assert again.stderr.startswith("typewriter: 404 conversation_not_found")
    assert "Traceback" not in again.stderr


def test_conversations_when_the_server_is_not_there() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    done = typewriter("conversations", "list", "--url", url)
    assert done.returncode == 3
    assert done.stderr.splitlines() == [f"typewriter: cannot reach {url}: connection refused"]


def test_a_reader_that_leaves_stops_the_answer(server: RunningServer) -> None:
    """``typewriter chat Q | head -c 20``: no traceback, exit 141, the answer stopped."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TYPEWRITER_")}
    question = words(200)  # 1000 characters at 50 pieces of 4 a second: 5 s
    with subprocess.Popen(
        [sys.executable, "-m", "typewriter", "chat", "--url", server.url, "-a", "echo", question],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=clean,
    ) as process:
        assert process.stdout is not None and process.stderr is not None
        assert process.stdout.read(20) == question[:20].encode()
        process.stdout.close()  # as `head` does once it has its bytes
        assert process.wait(timeout=30) == 141
        assert process.stderr.read() == b""
    [conversation] = conversations(server.url)
    answer = stored(server.url, conversation["id"])[-1]
    pause = threading.Event()
    for _ in range(500):  # the cancel was sent before the exit; its end is stored at once
        if answer["status"] != "streaming":
            break
        pause.wait(0.02)
        answer = stored(server.url, conversation["id"])[-1]
    assert answer["finish_reason"] == "cancelled"


def test_a_failed_answer_is_exit_code_1_with_its_error(server: RunningServer) -> None:
    options = json.dumps({"simulate": {"fail_after_tokens": 2}})
    done = typewriter("chat", "--url", server.url, "-a", "echo", "--options", options, words(9))
    assert done.returncode == 1
    assert done.stdout == words(9)[:8] + "\n"  # two pieces of 4 characters, then the failure
    [line] = done.stderr.splitlines()
    assert line.startswith("typewriter: the answer failed: ") and line.endswith("(upstream_error)")
    bad = typewriter("chat", "--url", server.url, "--options", "[1]", "hi")
    assert bad.returncode == 2 and "must be a JSON object" in bad.stderr


def test_the_api_key_variable(make_server: ServerFactory, tmp_path: Path) -> None:
    key = add_user(tmp_path, "alice")
    server = make_server(data_dir=tmp_path, auth="on")
    keyless = typewriter("chat", "--url", server.url, "-a", "echo", "hi")
    assert keyless.returncode == 1
    assert keyless.stderr.startswith("typewriter: 401 missing_api_key")
    done = typewriter("chat", "--url", server.url, "-a", "echo", "hi", TYPEWRITER_API_KEY=key)
    assert (done.returncode, done.stdout) == (0, "hi\n")
    listed = typewriter("conversations", "list", "--url", server.url, TYPEWRITER_API_KEY=key)
    assert listed.returncode == 0 and "\thi\techo\t" in listed.stdout
