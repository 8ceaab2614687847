"""A new conversation's title, made from its first question: one line of plain text.

The sidebar, the tab and the terminal client show a title as text, never as Markdown,
so a question written in Markdown ("Here is a **table**:") must not leave its syntax
in the title ("Here is a table:"). Only what Markdown would not show as such is taken
out: emphasis and code marks, a link's address (its text stays), a heading's ``#``, a
list's or quote's marker. A title renamed by its user is kept as typed.
"""

from __future__ import annotations

import re

__all__ = ["TITLE_LENGTH", "plain_text", "title_for"]

TITLE_LENGTH = 80

_LINE_START = re.compile(r"^(?:\s*(?:>\s*)+)?\s*(?:#{1,6}\s+|[-*+]\s+|\d{1,9}[.)]\s+)?")
_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")
_CODE = re.compile(r"(`+)(.+?)\1")
_STRONG = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1")
_EMPHASIS = re.compile(r"(?<![\w*])([*_])(?=\S)(.+?)(?<=\S)\1(?![\w*])")
_STRIKE = re.compile(r"~~(?=\S)(.+?)(?<=\S)~~")
_SPACES = re.compile(r"\s+")


def plain_text(line: str) -> str:
    """One line of Markdown as the text it shows: its marks taken out, its words kept."""
    text = _LINE_START.sub("", line, count=1)
    text = re.sub(r"\s+#+\s*$", "", text)  # a closing heading sequence ("# Title #")
    text = _IMAGE.sub(r"\1", text)
    text = _LINK.sub(r"\1", text)
    text = _CODE.sub(lambda m: m.group(2).strip(), text)
    for _ in range(2):  # nested marks: ***both*** and **a *b* c**
        text = _STRONG.sub(r"\2", text)
        text = _STRIKE.sub(r"\1", text)
        text = _EMPHASIS.sub(r"\2", text)
    return _SPACES.sub(" ", text).strip()


def title_for(question: str) -> str:
    """The first line of the question that shows any text, as plain text, shortened."""
    lines = (plain_text(line) for line in question.splitlines() if not _is_fence(line))
    first = next((line for line in lines if line), "")
    if not first:
        return "New chat"
    return first if len(first) <= TITLE_LENGTH else first[: TITLE_LENGTH - 1] + "…"


def _is_fence(line: str) -> bool:
    """A code fence's opening line (```python) or a rule (---): no words of the question."""
    return bool(re.fullmatch(r"\s*(`{3,}|~{3,}).*|\s*([-*_=])(\s*\2){2,}\s*", line))
