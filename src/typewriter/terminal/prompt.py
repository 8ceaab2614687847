"""The chat prompt: line editing and history through the standard library's ``readline``.

``readline`` rather than a full-screen prompt library: it costs no dependency,
honours the user's ``~/.inputrc`` (emacs or vi keys), and leaves the terminal
an ordinary scrolling one, which the live answer and the pseudo-terminal tests
both rely on. Where it is missing (Windows), ``input()`` still reads lines.

The history is kept in ``chat_history`` under the user's state directory
(``$XDG_STATE_HOME/typewriter``, ``~/.local/state/typewriter`` by default):
the XDG specification's own example of state, neither configuration nor data.
It holds the questions typed, so it is created readable by its owner only.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from types import ModuleType

import platformdirs

__all__ = ["HISTORY_LENGTH", "Prompt", "history_path"]

HISTORY_LENGTH = 1000
"""Lines kept in the history file."""


def history_path() -> Path:
    return platformdirs.user_state_path("typewriter") / "chat_history"


def _readline() -> ModuleType | None:
    try:
        import readline
    except ImportError:  # pragma: no cover - Windows without pyreadline
        return None
    return readline


class Prompt:
    """Reads one line at a time; ``None`` means the user left (Ctrl+D, or Ctrl+C)."""

    def __init__(self, history: Path | None = None) -> None:
        self._history = history
        self._readline = _readline()
        if self._readline is None or history is None:
            return
        self._readline.set_history_length(HISTORY_LENGTH)
        with contextlib.suppress(OSError):  # none yet, or unreadable: start empty
            self._readline.read_history_file(history)

    def read(self, text: str = "> ") -> str | None:
        try:
            line = input(text)
        except (EOFError, KeyboardInterrupt):
            print()  # leave the terminal on a fresh line
            return None
        return line

    def save(self) -> None:
        """Write the history back; a directory that cannot be written costs the history only."""
        if self._readline is None or self._history is None:
            return
        with contextlib.suppress(OSError):
            self._history.parent.mkdir(parents=True, exist_ok=True)
            if not self._history.exists():
                os.close(os.open(self._history, os.O_WRONLY | os.O_CREAT, 0o600))
            self._readline.write_history_file(self._history)
