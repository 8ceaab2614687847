"""Telling a model's ``<think>…</think>`` reasoning from its answer, piece by piece.

Reasoning models served as plain text (no reasoning parser on the server) put
their thinking inside the content: ``<think>\\n…\\n</think>\\n\\nThe answer``.
An upstream or assistant with ``think_tags = true`` has its content split here
into reasoning and answer text, as the pieces arrive.

The rules, chosen so that an answer is never held back or misread:

* Only a **leading** ``<think>`` opens reasoning: the first thing in the
  content, after optional whitespace. An answer that mentions or quotes the
  tag later (``Use <think> to…``) stays text, and so does a second
  ``<think>`` after the reasoning closed: nothing after the first
  ``</think>`` is ever taken for reasoning.
* A tag may arrive split anywhere across pieces (``<thi`` + ``nk>``). What is
  held back is only what could still be the start of the tag being looked for
  (the leading whitespace and a prefix of ``<think>`` before the answer
  begins, a prefix of ``</think>`` at the end of the reasoning), never more:
  text that cannot be part of a tag goes out at once.
* Whitespace between ``</think>`` and the answer is dropped (the models put
  a blank line there), so the answer starts with its first word.
* Content whose ``<think>`` is never closed is all reasoning: the model was
  stopped, or ran out of tokens, while thinking.
* A ``</think>`` with no ``<think>`` before it (a chat template that puts the
  opening tag in the prompt) is text: telling it apart would mean holding the
  whole answer back until the end. Such a server's own reasoning parser
  (``reasoning_content``) is the way to carry that model's thinking.

Pure and without I/O: :class:`ThinkSplitter` takes strings and returns
strings; the chunk stream is wrapped in ``think_chunks.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

__all__ = ["OPEN", "CLOSE", "Split", "ThinkSplitter"]

OPEN = "<think>"
CLOSE = "</think>"


@dataclass(frozen=True, slots=True)
class Split:
    """What one piece of content turned out to be: reasoning first, then answer text.

    Either may be empty. Within one piece the reasoning always comes before the
    text (reasoning only ever ends, it never starts after text).
    """

    reasoning: str = ""
    text: str = ""


class _State(Enum):
    START = "start"  # nothing but whitespace (and maybe part of <think>) seen yet
    REASONING = "reasoning"  # inside <think>, looking for </think>
    GAP = "gap"  # after </think>, dropping whitespace before the answer
    TEXT = "text"  # the answer: everything from here on is text


class ThinkSplitter:
    """An incremental splitter of content into reasoning and text (one per answer)."""

    def __init__(self) -> None:
        self._state = _State.START
        self._held = ""

    def feed(self, piece: str) -> Split:
        """The reasoning and text this piece makes certain; a possible tag prefix is held."""
        if self._state is _State.TEXT:
            return Split(text=piece)
        buffer = self._held + piece
        self._held = ""
        if self._state is _State.START:
            return self._start(buffer)
        if self._state is _State.REASONING:
            return self._reasoning(buffer)
        return self._gap(buffer)

    def close(self) -> Split:
        """What is still held, at the end of the content.

        A held ``<thi`` (or whitespace) before any answer is text: the tag never
        came. A held ``</thi`` inside reasoning is reasoning: the tag never closed.
        """
        held, self._held = self._held, ""
        if self._state is _State.REASONING:
            return Split(reasoning=held)
        if self._state is _State.START:
            self._state = _State.TEXT
            return Split(text=held)
        return Split()

    def _start(self, buffer: str) -> Split:
        body = buffer.lstrip()
        if body.startswith(OPEN):
            self._state = _State.REASONING
            return self._reasoning(body[len(OPEN) :])
        if OPEN.startswith(body):  # whitespace only, or a prefix of the tag: wait
            self._held = buffer
            return Split()
        self._state = _State.TEXT
        return Split(text=buffer)

    def _reasoning(self, buffer: str) -> Split:
        end = buffer.find(CLOSE)
        if end >= 0:
            self._state = _State.GAP
            after = self._gap(buffer[end + len(CLOSE) :])
            return Split(reasoning=buffer[:end], text=after.text)
        keep = _prefix_at_end(buffer, CLOSE)
        self._held = buffer[len(buffer) - keep :] if keep else ""
        return Split(reasoning=buffer[: len(buffer) - keep])

    def _gap(self, buffer: str) -> Split:
        text = buffer.lstrip()
        if text:
            self._state = _State.TEXT
        return Split(text=text)


def _prefix_at_end(buffer: str, tag: str) -> int:
    """The length of the longest proper prefix of ``tag`` that ``buffer`` ends with."""
    for size in range(min(len(tag) - 1, len(buffer)), 0, -1):
        if buffer.endswith(tag[:size]):
            return size
    return 0
