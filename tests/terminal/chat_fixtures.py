"""The pty fixture of the terminal tests (``pytest_plugins = ["terminal.chat_fixtures"]``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from terminal.pty_chat import ROWS, ChatTerminal, Terminals


@pytest.fixture
def terminals(tmp_path: Path) -> Iterator[Terminals]:
    """Start ``typewriter chat ARGS`` on ptys, with their own state directory (the prompt's
    history under ``tmp_path / "state"``); all are closed after the test."""
    started: list[ChatTerminal] = []

    def start(*args: str, rows: int = ROWS) -> ChatTerminal:
        terminal = ChatTerminal(*args, state_dir=tmp_path / "state", rows=rows)
        started.append(terminal)
        return terminal

    yield start
    for terminal in started:
        terminal.close()
