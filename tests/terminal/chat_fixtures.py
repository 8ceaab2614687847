"""The pty fixture of the terminal tests (``pytest_plugins = ["terminal.chat_fixtures"]``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from terminal.pty_chat import ChatTerminal, Terminals


@pytest.fixture
def terminals(tmp_path: Path) -> Iterator[Terminals]:
    """Start ``typewriter chat ARGS`` on ptys, with their own state directory (the prompt's
    history under ``tmp_path / "state"``); all are closed after the test."""
    started: list[ChatTerminal] = []

    def start(*args: str) -> ChatTerminal:
        terminal = ChatTerminal(*args, state_dir=tmp_path / "state")
        started.append(terminal)
        return terminal

    yield start
    for terminal in started:
        terminal.close()
