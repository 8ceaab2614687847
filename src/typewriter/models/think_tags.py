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
* Whitespace right after ``<think>`` and between ``</think>`` and the answer
  is dropped (the models put a line break or a blank line there), so the
  reasoning and the answer each start with their first word.
* Content whose ``<think>`` is never closed is all reasoning: the model was
  stopped, or ran out of tokens, while thinking.
* A ``</think>`` with no ``<think>`` before it (a chat template that puts the
  opening tag in the prompt) is text: telling it apart would mean holding the
  whole answer back until the end. Such a server's own reasoning parser
  (``reasoning_content``) is the way to carry that model's thinking.

Without I/O: :class:`ThinkSplitter` takes strings and returns strings, and
:func:`split_think_tags` wraps a model's chunk iterator with one (the
generation does, for an assistant with ``think_tags``).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from enum import Enum

from typewriter.models.base import Chunk

__all__ = ["OPEN", "CLOSE", "Split", "ThinkSplitter", "split_think_tags"]

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
        self._fresh = True  # no reasoning out yet: leading whitespace is dropped

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
        if self._fresh:
            buffer = buffer.lstrip()
            self._fresh = not buffer
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


async def split_think_tags(chunks: AsyncIterator[Chunk]) -> AsyncGenerator[Chunk, None]:
    """The chunks with their ``<think>`` content moved to ``reasoning``.

    Every chunk is passed on (its usage, tool calls and finish reason untouched), so the
    generation's watchdog sees the model's progress even while a tag prefix is held; what
    is still held when the model finishes goes out with its finish reason. Closing this
    iterator closes the model's (that is how an answer is stopped).
    """
    splitter = ThinkSplitter()
    async with contextlib.aclosing(chunks):  # type: ignore[type-var]
        async for chunk in chunks:
            split = splitter.feed(chunk.text) if chunk.text else Split()
            if chunk.finish_reason is not None:
                end = splitter.close()
                split = Split(split.reasoning + end.reasoning, split.text + end.text)
            if split.text == chunk.text and not split.reasoning:
                yield chunk  # the answer's text as it came (past the reasoning: every chunk)
                continue
            yield dataclasses.replace(
                chunk, text=split.text, reasoning=chunk.reasoning + split.reasoning
            )
    end = splitter.close()  # the model stopped without a finish reason: nothing is lost
    if end.reasoning or end.text:
        yield Chunk(text=end.text, reasoning=end.reasoning)
