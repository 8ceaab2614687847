"""The marker where an answer changed upstream, on the page, in a real Chromium.

A real gateway's assistant has two chaos upstreams (``tests/upstream/scripted_chaos.py``): the
first fails mid-answer with an error event, the second continues the answer to its end. The
page must show one small marker at the seam while the answer types (the stream's ``notice``),
the text around it exactly the answer; the stored answer shows it at the same place after a
reload (its ``sources``); copying the answer gives the text without it.

The marker goes through the page's Markdown as a sentinel character: for many kinds of
Markdown, a seam at every offset of it must leave the rendering exactly as it is without one,
but for the marker itself (nothing of a list, a code block, a table or a formula may break).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from conftest import RunningServer, ServerFactory
from upstream.chaos_control import ChaosUpstream
from upstream.chaos_schedule import answer_text, answer_words, plan
from web.chat_page import answers, assistant_messages, conversation_id, open_context, watch

pytestmark = pytest.mark.integration

# -- the marker in Markdown ---------------------------------------------------------------------

SAMPLES = {
    "prose": "Plain words, then _emphasis_, **bold**, `code` and a [link](https://example.com/a).",
    "bare url": "See https://example.com/path?q=1 and www.example.org for more.",
    "lists": "Steps:\n\n1. first one\n2. second\n   - nested *item*\n- [ ] a task\n- [x] done",
    "python": "Code:\n\n```python\ndef f(x):\n    return x + 1  # one more\n```\n\nAfter.",
    "unknown code": "```nosuchlanguage\nsome plain code\n\n  indented\n```",
    "code in a list": "- item\n\n  ```js\n  const a = 1;\n  ```\n- next",
    "table": "| name | value |\n|:-----|------:|\n| a | 1 |\n| b *c* | `2` |\n\nAfter the table.",
    "quote and heading": "# Title\n\n> quoted line\n> more of it\n\nSetext\n======\n\n---\n\nEnd.",
    "maths": "Inline $a^2 + b^2 = c^2$ and \\(x + y\\).\n\n$$\\frac{a}{b} + c$$\n\nDone.",
    "breaks": "line one  \nline two\\\nline three\n\n[ref]: https://example.com/r\n\nA [ref] link.",
}

# For each sample and each offset of it: the page's MarkdownView renders it with one seam
# there and without; the problems found (a missing marker, any other difference) come back.
EVERY_OFFSET = """async ([url, samples, growing]) => {
    const m = await import(url);
    await m.markdownReady;
    const problems = [];
    const render = (text, seams, isGrowing) => {
        const box = document.createElement('div');
        new m.MarkdownView(box).render(text, { growing: isGrowing, seams });
        return box;
    };
    const bare = (box) => {
        const markers = [...box.querySelectorAll('.seam')];
        for (const marker of markers) marker.remove();
        box.normalize();
        // marked ends a code block's text with a newline, but not an empty one's
        return [markers, box.innerHTML.replaceAll('\\n</code>', '</code>')];
    };
    for (const [name, text] of Object.entries(samples)) {
        const ends = growing ? [...Array(text.length + 1).keys()] : [text.length];
        for (const end of ends) {
            const shown = text.slice(0, end);
            const plain = render(shown, [], growing).innerHTML.replaceAll('\\n</code>', '</code>');
            const offsets = growing ? [Math.floor(end / 2)] : [...Array(end + 1).keys()];
            for (const at of offsets) {
                const [markers, html] = bare(render(shown, [{ at, label: 'by x' }], growing));
                const where = `${name} [${end}] @${at}`;
                const wanted = plain === '' ? 0 : 1; // nothing shown yet: nothing to mark
                if (markers.length !== wanted) problems.push(`${where}: ${markers.length} markers`);
                else if (wanted && markers[0].getAttribute('aria-label') !== 'by x') {
                    problems.push(`${where}: no label`);
                }
                if (html !== plain) problems.push(`${where}: ${html} != ${plain}`);
            }
        }
    }
    return problems;
}"""


def markdown_url(page: Page) -> str:
    url: str = page.evaluate(
        "document.querySelector('link[rel=modulepreload][href$=\"/js/markdown.js\"]').href"
    )
    return url


@pytest.mark.parametrize("growing", [False, True], ids=["finished", "growing"])
def test_a_seam_anywhere_changes_nothing_but_its_marker(page: Page, growing: bool) -> None:
    problems: list[str] = page.evaluate(EVERY_OFFSET, [markdown_url(page), SAMPLES, growing])
    where = sorted({problem.split(":")[0] for problem in problems})
    assert not problems, f"{len(problems)} problems at {where}, first: {problems[:3]}"


SEAMS_IN_ORDER = """async ([url, text, seams]) => {
    const m = await import(url);
    await m.markdownReady;
    const box = document.createElement('div');
    new m.MarkdownView(box).render(text, { seams });
    return [...box.querySelectorAll('.seam')].map((marker) => {
        const range = document.createRange();
        range.setStart(box, 0);
        range.setEndBefore(marker);
        return [range.toString(), marker.title];
    });
}"""


def test_each_marker_stands_at_its_seam_and_says_who_continued(page: Page) -> None:
    text = "One two three.\n\n```python\nx = 1\ny = 2\n```\n\nFour five."
    seams = [
        {"at": text.index(" two"), "label": "first"},
        {"at": text.index("y = 2"), "label": "second"},
        {"at": text.index(" five"), "label": "third"},
    ]
    found = page.evaluate(SEAMS_IN_ORDER, [markdown_url(page), text, seams])
    before = [re.sub(r"\s+", " ", shown).strip() for shown, _ in found]
    assert [label for _, label in found] == ["first", "second", "third"]
    assert before[0] == "One"
    assert before[1].startswith("One two three.") and before[1].endswith("x = 1")
    assert before[2].endswith("y = 2 Four")
