"""A new conversation's title is plain text: the Markdown of its first question taken out."""

from __future__ import annotations

import pytest

from typewriter.store.titles import TITLE_LENGTH, title_for


@pytest.mark.parametrize(
    ("question", "title"),
    [
        ("Here is a **table**:", "Here is a table:"),
        ("# A *heading* ##\nbody", "A heading"),
        ("- a list item with `code`", "a list item with code"),
        ("1. [the docs](https://example.com/x_y) and ![a cat](cat.png)", "the docs and a cat"),
        ("> quoted __strong__ and _emphasis_, ~~gone~~", "quoted strong and emphasis, gone"),
        ("***both*** marks", "both marks"),
        ("```python\nprint('hi')\n```", "print('hi')"),
        ("---\n\n  What is SSE?  ", "What is SSE?"),
        ("snake_case_name and 2*3*4 and a * b", "snake_case_name and 2*3*4 and a * b"),
        ("什么是**服务器**推送事件？", "什么是服务器推送事件？"),
        ("   \n\n", "New chat"),
    ],
)
def test_titles_are_plain_text(question: str, title: str) -> None:
    assert title_for(question) == title


def test_a_long_title_is_shortened_after_its_marks_are_gone() -> None:
    title = title_for("**" + "word " * 40 + "end**")
    assert len(title) == TITLE_LENGTH and title.endswith("…") and "*" not in title
