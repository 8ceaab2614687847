"""Continuing an answer on another upstream: the request that asks for it, and the seam.

When an upstream dies after text was shown, the next one is asked to continue from that text.
Two things must then be right, and both are pure functions of text, kept here apart from any
I/O so they can be tested exhaustively:

* **The request.** An upstream that supports an assistant prefix (vLLM's
  ``continue_final_message``, DeepSeek's and Mistral's ``prefix: true``) gets the partial
  answer as a final assistant message it extends token for token. Any other gets the partial
  answer as an assistant message and a user message asking it to continue. Support cannot be
  detected, so it is a configured :class:`PrefixStyle`. Reasoning is never sent on: only the
  partial answer's text.

* **The seam.** A model asked to continue often starts by repeating the end of what it sees.
  :func:`trim_overlap` finds such a repetition and says how much of the continuation to drop:
  only a repetition of at least ``min_words`` words (so a continuation that merely begins
  with "the" keeps it), and only one ending within the first ``window`` characters, so that
  :class:`SeamTrimmer`, the streaming form, holds back at most that much before passing the
  rest through unchanged.

Words: a run of letters, digits or ``_`` is one word; a CJK ideograph or kana, which are
written without spaces, is a token of its own worth half a word (a Chinese word is one to
two characters, so three words are six characters); punctuation is a token worth nothing,
compared but not counted. Whitespace is not compared: a repetition that reflows a line still
counts. The shown text may end mid-word (the stream broke inside a token): its last word
then matches a continuation word it begins, and the seam falls inside that word
(``"The quick bro"`` + ``"quick brown fox"`` reads ``"The quick brown fox"``).

Spacing at the seam: the rest of the continuation keeps its own spacing after a trimmed
overlap. If the shown text ends in whitespace, the continuation's leading spaces and tabs are
dropped (newlines kept), so no space is doubled. A continuation asked for with an
instruction starts a fresh message, without the leading space a word in mid-sentence has:
with ``fresh_start`` (set by :func:`continuation_request` for that style) a single space is
put back between a word (or ``.,;:!?)``) and a word when nothing was trimmed. A prefix
continuation carries its own spacing, exactly, and gets none added.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from typewriter.messages import ChatMessage

__all__ = [
    "CONTINUE_INSTRUCTION",
    "DEFAULT_MIN_WORDS",
    "DEFAULT_WINDOW",
    "ContinuationRequest",
    "PrefixStyle",
    "Seam",
    "SeamTrimmer",
    "continuation_request",
    "trim_overlap",
]

DEFAULT_MIN_WORDS = 3
DEFAULT_WINDOW = 200
"""Characters of a continuation looked at for a repetition, and at most held back: about 50
tokens, a sentence or two, which is as much as models repeat, and a fraction of a second of a
stream."""

CONTINUE_INSTRUCTION = (
    "Your previous message was cut off. Continue exactly where it stopped, without repeating "
    "anything already written and without any introduction or comment: your reply is "
    "appended to it as is."
)

_CJK = (
    "\u3040-\u30ff"  # hiragana, katakana
    "\u3400-\u4dbf"  # CJK extension A
    "\u4e00-\u9fff"  # CJK unified ideographs
    "\uf900-\ufaff"  # compatibility ideographs
    "\uff66-\uff9f"  # half-width katakana
    "\U00020000-\U0003ffff"  # supplementary ideographs
)
_TOKEN = re.compile(rf"(?P<cjk>[{_CJK}])|(?P<word>(?:(?![{_CJK}])\w)+)|\S")
_WORD, _CJK_KIND, _MARK = "word", "cjk", "mark"
_WEIGHT = {_WORD: 1.0, _CJK_KIND: 0.5, _MARK: 0.0}
_SPACE_BEFORE_AFTER = frozenset(".,;:!?)")


@dataclass(frozen=True, slots=True)
class _Token:
    text: str
    kind: str
    start: int
    end: int


def _tokens(text: str) -> list[_Token]:
    found: list[_Token] = []
    for match in _TOKEN.finditer(text):
        kind = _CJK_KIND if match.group("cjk") else _WORD if match.group("word") else _MARK
        found.append(_Token(match.group(), kind, match.start(), match.end()))
    return found


def _is_word_char(char: str) -> bool:
    match = _TOKEN.fullmatch(char)
    return match is not None and match.lastgroup == "word"


@dataclass(frozen=True, slots=True)
class Seam:
    """Where a continuation joins the shown text.

    ``drop``: leading characters of the continuation not to show (the repetition, and spaces
    that would double one the shown text ends with); ``insert``: what goes between (``""`` or
    ``" "``); ``overlap``: the repeated text dropped, for the log.
    """

    drop: int
    insert: str = ""
    overlap: str = ""

    def join(self, shown: str, continuation: str) -> str:
        """The whole answer as the listener reads it."""
        return shown + self.insert + continuation[self.drop :]


class _Tail:
    """The end of the shown text, tokenised once for every look at a growing continuation."""

    def __init__(self, shown: str, window: int) -> None:
        self.shown = shown
        # A repetition ends within ``window`` characters, so it has at most ``window`` tokens;
        # with the whitespace between them four times as many characters is plenty.
        span = 4 * window + 16
        tail = shown[-span:]
        tokens = _tokens(tail)
        if len(shown) > span and tokens and tokens[0].start == 0:
            tokens = tokens[1:]  # possibly cut by the slice
        self.tokens = [t.text for t in tokens]
        kinds = [t.kind for t in tokens]
        # Does the shown text end inside a word (no space after its last word)?
        self.partial = bool(tokens) and kinds[-1] == _WORD and tokens[-1].end == len(tail)
        # The weight of the last n shown tokens, for every n.
        self.weights = [0.0]
        for kind in reversed(kinds):
            self.weights.append(self.weights[-1] + _WEIGHT[kind])


def _overlap_end(tail: _Tail, head: str, *, more: bool, final: bool, min_words: int) -> int | None:
    """The end in ``head`` of the longest qualifying repetition (0: none), or None if more of
    the continuation is needed to know.

    ``more``: text follows ``head`` (known or not yet arrived), so a word touching its end may
    still grow: it only confirms what any growth would confirm too. ``final``: nothing after
    ``head`` will be looked at, so a candidate ``head`` cannot confirm is refuted. Candidates
    only ever go from open to confirmed or refuted as ``head`` grows, so the answer is the same
    however the continuation arrives.
    """
    shown = tail.tokens
    found = _tokens(head)
    last_open = more and bool(found) and found[-1].kind == _WORD and found[-1].end == len(head)
    waiting = False
    for n in range(len(shown), 0, -1):
        if tail.weights[n] < min_words:
            continue
        if n > len(found):
            # Longer than what has arrived: open while consistent with it, until final.
            if not final and _consistent(shown[-n:], found, last_open):
                waiting = True
            continue
        verdict = _candidate(tail, found[:n], n, last_open and n == len(found))
        if verdict is None:
            waiting = waiting or not final
        elif verdict >= 0:
            return None if waiting else verdict
    return None if waiting else 0


def _consistent(shown: list[str], found: list[_Token], last_open: bool) -> bool:
    """Whether the continuation so far can still become the start of ``shown``."""
    if not found:
        return True
    for s, c in zip(shown, found[:-1], strict=False):
        if s != c.text:
            return False
    last, expected = found[-1].text, shown[len(found) - 1]
    return expected.startswith(last) if last_open else expected == last


def _candidate(tail: _Tail, head: list[_Token], n: int, last_open: bool) -> int | None:
    """For the last ``n`` shown tokens against the first ``n`` continuation tokens: the end of
    the repetition, -1 if they differ, None if the open last token leaves it undecided."""
    shown = tail.tokens[-n:]
    for s, c in zip(shown[:-1], head[:-1], strict=True):
        if s != c.text:
            return -1
    last_shown, last = shown[-1], head[-1]
    if tail.partial:
        # The shown text may have stopped inside this word: the continuation's word must
        # begin with it, and the seam falls after that beginning.
        if last.text.startswith(last_shown):
            return last.start + len(last_shown)
        if last_open and last_shown.startswith(last.text):
            return None
        return -1
    if last_open:
        return None if last_shown.startswith(last.text) else -1
    return last.end if last.text == last_shown else -1


def _space_between(shown: str, first: str) -> bool:
    """A fresh message's first word after the shown text's last word needs a space."""
    return (
        bool(shown)
        and (_is_word_char(shown[-1]) or shown[-1] in _SPACE_BEFORE_AFTER)
        and _is_word_char(first)
    )


def trim_overlap(
    shown: str,
    continuation: str,
    *,
    min_words: int = DEFAULT_MIN_WORDS,
    window: int = DEFAULT_WINDOW,
    fresh_start: bool = False,
) -> Seam:
    """How ``continuation`` joins ``shown`` (see the module's docstring for the rules)."""
    tail = _Tail(shown, window)
    head = continuation[:window]
    more = len(continuation) > window
    end = _overlap_end(tail, head, more=more, final=True, min_words=min_words) or 0
    rest = continuation[end:]
    skip = 0
    if shown and shown[-1].isspace():
        skip = len(rest) - len(rest.lstrip(" \t"))
    insert = ""
    if fresh_start and end == 0 and rest and _space_between(shown, rest[0]):
        insert = " "
    return Seam(end + skip, insert, continuation[:end])


@dataclass
class SeamTrimmer:
    """:func:`trim_overlap` for a continuation that arrives in pieces.

    :meth:`feed` returns what to show now. It holds text back only until the seam is decided
    (at most ``window`` characters, usually a few words: as soon as no repetition of the
    shown text's end is still possible), then passes every piece through unchanged. Whatever
    the pieces, the text shown is ``trim_overlap(shown, whole).join(shown, whole)`` minus
    ``shown``.
    """

    shown: str
    min_words: int = DEFAULT_MIN_WORDS
    window: int = DEFAULT_WINDOW
    fresh_start: bool = False
    seam: Seam | None = field(default=None, init=False)
    _buffer: str = field(default="", init=False)
    _skipping: bool = field(default=False, init=False)
    _tail: _Tail | None = field(default=None, init=False)

    def feed(self, piece: str) -> str:
        if self.seam is not None:
            return self._pass(piece)
        self._buffer += piece
        if not self._buffer:
            return ""
        return self._decide(final=len(self._buffer) > self.window)

    def finish(self) -> str:
        """The end of the continuation: whatever is still held back, decided now."""
        if self.seam is not None:
            return ""
        return self._decide(final=True)

    def _decide(self, *, final: bool) -> str:
        if self._tail is None:
            self._tail = _Tail(self.shown, self.window)
        head = self._buffer[: self.window]
        more = not final or len(self._buffer) > self.window
        end = _overlap_end(self._tail, head, more=more, final=final, min_words=self.min_words)
        if end is None:
            return ""
        insert = ""
        if self.fresh_start and end == 0 and self._buffer:
            insert = " " if _space_between(self.shown, self._buffer[0]) else ""
        self.seam = Seam(end, insert, self._buffer[:end])
        self._skipping = bool(self.shown) and self.shown[-1].isspace()
        rest, self._buffer = self._buffer[end:], ""
        return insert + self._pass(rest)

    def _pass(self, piece: str) -> str:
        if not (self._skipping and piece):
            return piece
        kept = piece.lstrip(" \t")
        self._skipping = not kept
        if self.seam is not None and len(kept) < len(piece):
            seam = self.seam
            self.seam = Seam(seam.drop + len(piece) - len(kept), seam.insert, seam.overlap)
        return kept


class PrefixStyle(StrEnum):
    """How an upstream is asked to continue a partial answer (configured: it cannot be
    detected)."""

    NONE = "none"
    """No assistant prefix: the partial answer, then a user message asking to continue."""
    VLLM = "vllm"
    """vLLM: a final assistant message and ``continue_final_message``."""
    DEEPSEEK = "deepseek"
    """DeepSeek's and Mistral's prefix completion: ``"prefix": true`` on the final message."""


@dataclass(frozen=True, slots=True)
class ContinuationRequest:
    """What to send to continue an answer.

    ``messages``: the conversation to send; ``fields``: top-level request body fields to add;
    ``final_message_fields``: fields to add to the last message as it goes on the wire (the
    message type has no place for them); ``fresh_start``: whether the reply is a new message
    rather than the very continuation of the text, for :func:`trim_overlap`.
    """

    messages: tuple[ChatMessage, ...]
    fields: dict[str, Any]
    final_message_fields: dict[str, Any]
    fresh_start: bool


def continuation_request(
    messages: tuple[ChatMessage, ...] | list[ChatMessage],
    partial: str,
    style: PrefixStyle,
    *,
    instruction: str = CONTINUE_INSTRUCTION,
) -> ContinuationRequest:
    """The request that asks an upstream to continue ``partial``, the text shown so far of
    the answer to ``messages``.

    ``partial`` is text only: the earlier upstream's reasoning is never sent on. With
    nothing shown yet there is nothing to continue: the request is the original one.
    """
    original = tuple(messages)
    if not partial:
        return ContinuationRequest(original, {}, {}, False)
    answer = ChatMessage(role="assistant", content=partial)
    if style is PrefixStyle.VLLM:
        fields = {"continue_final_message": True, "add_generation_prompt": False}
        return ContinuationRequest((*original, answer), fields, {}, False)
    if style is PrefixStyle.DEEPSEEK:
        return ContinuationRequest((*original, answer), {}, {"prefix": True}, False)
    ask = ChatMessage(role="user", content=instruction)
    return ContinuationRequest((*original, answer, ask), {}, {}, True)
