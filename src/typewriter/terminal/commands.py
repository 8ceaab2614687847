"""What a line typed at the chat prompt means: a question, or a slash command.

A line that starts with ``/`` is a command; ``//`` escapes it, so a question can
start with a slash (``//etc/hosts is…`` asks "/etc/hosts is…").
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["COMMANDS", "Command", "Question", "Unknown", "help_text", "parse"]

COMMANDS: dict[str, tuple[str, str]] = {
    "new": ("", "start a new conversation (the next question opens it)"),
    "regenerate": ("", "answer the last question again (the earlier answer stays, as a branch)"),
    "assistant": ("[NAME]", "answer with NAME from now on; alone: list the assistants"),
    "conversations": ("[ID]", "your latest conversations; with an ID: go on with that one"),
    "help": ("", "this list"),
    "quit": ("", "leave (Ctrl+D or Ctrl+C at the prompt too)"),
}
"""Each command: its argument and what it does (the ``/help`` text)."""

_ALIASES = {"exit": "quit", "q": "quit", "?": "help", "regen": "regenerate"}


@dataclass(frozen=True, slots=True)
class Question:
    text: str


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    argument: str = ""


@dataclass(frozen=True, slots=True)
class Unknown:
    """A slash command that is none of ours: said so, never sent to the model."""

    name: str


def parse(line: str) -> Question | Command | Unknown | None:
    """The meaning of one typed line; ``None`` for a blank one (nothing to do)."""
    stripped = line.strip()
    if not stripped:
        return None
    if stripped.startswith("//"):
        return Question(stripped[1:])
    if not stripped.startswith("/"):
        return Question(line.strip("\n"))
    name, _, argument = stripped[1:].partition(" ")
    name = _ALIASES.get(name.lower(), name.lower())
    if name not in COMMANDS:
        return Unknown(stripped.split(" ", 1)[0])
    return Command(name, argument.strip())


def help_text() -> str:
    """The ``/help`` answer: one line per command."""
    width = max(len(f"/{name} {arg}".rstrip()) for name, (arg, _) in COMMANDS.items())
    lines = [
        f"  {f'/{name} {arg}'.rstrip():<{width}}  {what}" for name, (arg, what) in COMMANDS.items()
    ]
    lines.append("  Ctrl+C while an answer types stops it (on the server too).")
    return "\n".join(lines)
