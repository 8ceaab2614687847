"""``typewriter chat`` in a real pseudo-terminal, its screen read through a terminal emulator.

pexpect runs the command on a pty (so it sees a terminal: live Markdown, the
readline prompt, Ctrl+C as the tty driver's SIGINT), and pyte replays what it
writes onto an emulated screen: the tests read what a person would see, not the
escape sequences that drew it. Waiting is on output (each read blocks until the
program writes), never on a fixed sleep.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pexpect  # type: ignore[import-untyped]
import pyte

from helpers import sigint_as_in_a_terminal

__all__ = ["ChatTerminal", "Terminals"]

ROWS, COLS = 40, 100


class ChatTerminal:
    """One ``typewriter chat`` process on a pty of ``ROWS`` x ``COLS``."""

    def __init__(self, *args: str, state_dir: Path, rows: int = ROWS, cols: int = COLS) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TYPEWRITER_")}
        env.update(TERM="xterm-256color", XDG_STATE_HOME=str(state_dir))
        env.pop("COLUMNS", None)
        env.pop("LINES", None)
        self.screen = pyte.Screen(cols, rows)
        self._stream = pyte.Stream(self.screen)
        self.raw = ""
        self._typed = 0
        self.child = pexpect.spawn(
            sys.executable,
            ["-m", "typewriter", "chat", *args],
            env=env,
            dimensions=(rows, cols),
            encoding="utf-8",
            codec_errors="replace",
            preexec_fn=sigint_as_in_a_terminal,  # Ctrl+C must reach it as from a shell
        )

    # -- reading ----------------------------------------------------------------------------

    def _pump(self, timeout: float) -> bool:
        """Read what the program wrote (waiting up to ``timeout`` for some); False at its end."""
        try:
            data = self.child.read_nonblocking(65536, timeout=timeout)
        except pexpect.TIMEOUT:
            return True
        except pexpect.EOF:
            return False
        self.raw += data
        self._stream.feed(data)
        return True

    def lines(self) -> list[str]:
        return [line.rstrip() for line in self.screen.display]

    def text(self) -> str:
        return "\n".join(self.lines()).rstrip("\n")

    def wait(self, ready: Callable[[ChatTerminal], bool], what: str, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while not ready(self):
            left = deadline - time.monotonic()
            if left <= 0 or not self._pump(min(left, 1.0)) and not ready(self):
                raise AssertionError(f"waited for {what}; the screen:\n{self.text()}")

    def wait_text(self, pattern: str, timeout: float = 10) -> None:
        self.wait(lambda t: re.search(pattern, t.text()) is not None, repr(pattern), timeout)

    def at_prompt(self) -> bool:
        """The cursor sits after an empty ``> `` prompt."""
        row = self.screen.display[self.screen.cursor.y]
        return row.rstrip() == ">" and self.screen.cursor.x == 2

    def wait_prompt(self, timeout: float = 10) -> None:
        self.wait(ChatTerminal.at_prompt, "the prompt", timeout)

    # -- typing -----------------------------------------------------------------------------

    def ask(self, line: str) -> int:
        """Type a line at the prompt; returns the screen row where its answer begins (the
        tests keep to one screenful: a scrolled screen would move it)."""
        self.wait_prompt()
        row = int(self.screen.cursor.y)
        self._typed = len(self.raw)
        self.child.sendline(line)
        self.wait(lambda t: "\n" in t.raw[self._typed :], "the line typed")
        return row + (len("> ") + len(line)) // self.screen.columns + 1

    def wait_rows(self, first: int, pattern: str, timeout: float = 10) -> None:
        """Wait for ``pattern`` in the rows from ``first`` on (an answer, not the question)."""
        self.wait(
            lambda t: re.search(pattern, "\n".join(t.lines()[first:])) is not None,
            f"{pattern!r} from row {first}",
            timeout,
        )

    def wait_next_prompt(self, timeout: float = 10) -> None:
        """The prompt again, after the line typed last (and its answer)."""
        self.wait(
            lambda t: t.at_prompt() and "> " in t.raw[self._typed :].split("\n", 1)[-1],
            "the next prompt",
            timeout,
        )

    def rows_between(self, first: int, last: int) -> list[str]:
        """The non-blank screen rows from ``first`` to before ``last``."""
        return [line for line in self.lines()[first:last] if line]

    def ctrl_c(self) -> None:
        self.child.sendintr()

    def ctrl_d(self) -> None:
        self.child.sendeof()

    def exit_code(self, timeout: float = 15) -> int:
        """Read to the end, then the process's exit code (128 + n for a signal)."""
        deadline = time.monotonic() + timeout
        while self._pump(max(0.01, deadline - time.monotonic())):
            if time.monotonic() > deadline:
                raise AssertionError(f"still running; the screen:\n{self.text()}")
        self.child.wait()
        if self.child.signalstatus is not None:
            return 128 + int(self.child.signalstatus)
        return int(self.child.exitstatus or 0)

    def close(self) -> None:
        if self.child.isalive():
            self.child.terminate(force=True)
        self.child.close()


Terminals = Callable[..., ChatTerminal]
"""The ``terminals`` fixture: ``terminals("--url", url, ...)`` starts one."""
