"""An answer on the screen while it types.

On a terminal it is Markdown, redrawn live by ``rich`` as the text grows, with
the model's reasoning (when the assistant sends it) dimmed above it. While it
types, only the last screenful is redrawn (a live region taller than the
screen cannot be redrawn in place); the finished answer is printed whole.

When standard output is not a terminal (a pipe, a file, a script), the answer's
text is written as it comes, plain and exact, and nothing else goes to
standard output: no reasoning, no colours, no cursor movement.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable
from typing import IO, Protocol

from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.live import Live
from rich.markdown import Markdown
from rich.segment import Segment
from rich.text import Text

__all__ = ["AnswerView", "LiveView", "PlainView", "view_for"]


class AnswerView(Protocol):
    """What the session tells the screen; ``text`` is what was shown of the answer."""

    text: str

    def reasoning(self, text: str) -> None: ...

    def delta(self, text: str) -> None: ...

    def close(self) -> None: ...


class PlainView:
    """The answer's text as it comes, for pipes and scripts: exactly the deltas, then a newline."""

    def __init__(self, out: IO[str] | None = None) -> None:
        self._out = out or sys.stdout
        self.text = ""

    def reasoning(self, text: str) -> None:
        """Not written: standard output carries the answer only."""

    def delta(self, text: str) -> None:
        self.text += text
        self._out.write(text)
        self._out.flush()

    def close(self) -> None:
        self._out.write("\n")
        self._out.flush()


class _Tail:
    """The last lines of a renderable that fit the screen (less one for the cursor)."""

    def __init__(self, renderable: RenderableType) -> None:
        self._renderable = renderable

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        lines = console.render_lines(self._renderable, options, pad=False)
        keep = max(1, options.size.height - 1)
        for line in lines[-keep:]:
            yield from line
            yield Segment.line()


def _keys_unechoed() -> Callable[[], None]:
    """Stop the terminal echoing keys while the answer types (a ``^C`` or a key pressed
    would land inside the live region and garble it); returns how to restore it. Keys
    typed meanwhile stay queued for the next prompt; Ctrl+C still interrupts."""
    try:
        import termios

        fd = sys.stdin.fileno()
        if not sys.stdin.isatty():
            return lambda: None
        before = termios.tcgetattr(fd)
        quiet = termios.tcgetattr(fd)
        quiet[3] &= ~(termios.ECHO | termios.ECHOCTL)
        termios.tcsetattr(fd, termios.TCSANOW, quiet)
    except (ImportError, OSError, ValueError):  # no termios (Windows), no real stdin
        return lambda: None

    def restore() -> None:
        with contextlib.suppress(OSError, termios.error):
            termios.tcsetattr(fd, termios.TCSANOW, before)

    return restore


QUIET = 3.0
"""Seconds without a piece of the answer after which the view says it is waiting (a model
slow to start, or a connection being resumed): the screen never looks frozen."""


class LiveView:
    """Markdown redrawn as it types; reasoning dimmed above the answer."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self.text = ""
        self._reasoning = ""
        self._done = False
        self._last = time.monotonic()
        self._live = Live(
            console=console,
            get_renderable=self._renderable,
            refresh_per_second=12,
            transient=False,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._restore_keys = _keys_unechoed()
        self._live.start()

    def _renderable(self) -> RenderableType:
        parts: list[RenderableType] = []
        if self._reasoning:
            parts.append(Text(self._reasoning.strip("\n"), style="dim italic"))
        if self.text:
            parts.append(Markdown(self.text))
        elif not self._done:
            parts.append(Text("…", style="dim"))
        if not self._done and time.monotonic() - self._last > QUIET:
            parts.append(Text("(waiting for the server; Ctrl+C stops)", style="dim"))
        whole = Group(*parts)
        return whole if self._done else _Tail(whole)

    def reasoning(self, text: str) -> None:
        self._reasoning += text
        self._last = time.monotonic()

    def delta(self, text: str) -> None:
        self.text += text
        self._last = time.monotonic()

    def close(self) -> None:
        """Print the whole answer once, where the live region was (idempotent)."""
        if self._done:
            return
        self._done = True
        try:
            self._live.stop()
        finally:
            self._restore_keys()


def view_for(console: Console) -> AnswerView:
    """Live Markdown on a terminal, plain text anywhere else."""
    if console.is_terminal and not console.is_dumb_terminal:
        return LiveView(console)
    return PlainView(console.file)
