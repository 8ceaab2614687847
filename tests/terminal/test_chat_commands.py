"""What a line typed at the chat prompt means (no server: the parser alone)."""

from __future__ import annotations

from typewriter.terminal.commands import COMMANDS, Command, Question, Unknown, help_text, parse


def test_questions_commands_and_the_escape() -> None:
    assert parse("what is SSE?") == Question("what is SSE?")
    assert parse("  ") is None
    assert parse("/new") == Command("new")
    assert parse("/assistant  echo ") == Command("assistant", "echo")
    assert parse("/Conversations conv_abc") == Command("conversations", "conv_abc")
    assert parse("/exit") == Command("quit")
    assert parse("/frobnicate now") == Unknown("/frobnicate")
    assert parse("//etc/hosts lists names") == Question("/etc/hosts lists names")


def test_help_names_every_command() -> None:
    text = help_text()
    assert all(f"/{name}" in text for name in COMMANDS)
