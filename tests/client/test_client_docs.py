"""The examples of docs/client.md and the README's Python example run as written against a
real server (``TYPEWRITER_URL`` pointing at it), so the documentation cannot drift from the
clients."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

from conftest import RunningServer
from typewriter.models.simulated import CANNED_ANSWER

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
_BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def blocks(path: Path) -> list[str]:
    return [b for b in _BLOCK.findall(path.read_text()) if "typewriter.client" in b]


def run(source: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(source, "<example>", "exec"), {"__name__": "__example__"})
    return out.getvalue()


@pytest.mark.parametrize("index", range(len(blocks(ROOT / "docs" / "client.md"))))
def test_each_example_of_the_client_docs_runs(
    index: int, server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TYPEWRITER_URL", server.url)
    monkeypatch.delenv("TYPEWRITER_API_KEY", raising=False)
    run(blocks(ROOT / "docs" / "client.md")[index])


def test_the_readmes_client_example_prints_the_answer(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    (example,) = blocks(ROOT / "README.md")
    monkeypatch.delenv("TYPEWRITER_API_KEY", raising=False)
    printed = run(example.replace("http://127.0.0.1:8000", server.url))
    assert printed == CANNED_ANSWER
