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
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from conftest import RunningServer, ServerFactory
from upstream.chaos_control import ChaosUpstream
from upstream.chaos_schedule import answer_text, answer_words, plan
from web.chat_page import (
    answers,
    ask,
    assistant_messages,
    conversation_id,
    open_context,
    wait_for_end,
    watch,
)

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


# -- an answer continued by another upstream, live and stored -----------------------------------

SEED = 18
PACE = 25  # tokens a second: the answer types for a second or two, as a reader sees it
FIRST = {"name": "u0", "models": ["m-first"], "headers_timeout": 5}
# The second continues with an assistant prefix, so its text is exactly the rest of the answer.
SECOND = {"name": "u1", "models": ["m-second"], "headers_timeout": 5, "prefix_style": "vllm"}
CHAIN = {
    "name": "chain",
    "model": "m-first",
    "upstreams": ["u0"],
    "fallbacks": [{"model": "m-second", "upstreams": ["u1"]}],
    "continue_on_failure": True,
}
LABEL = "Continued from here by m-second (u1)"


def seamed_question() -> tuple[str, str]:
    """A question whose answer the first upstream cuts after a few words and before its last
    few (its seeded plan), and the part of the answer it writes."""
    for n in range(1, 500):
        key = f"question {n}"
        words = answer_words(SEED, key)
        after = plan(SEED, "u0", key, 0, ["error"]).after
        if 3 <= after <= len(words) - 3:
            return key, " ".join(words[:after])
    raise AssertionError("no question of the seed is cut mid-answer")


@pytest.fixture
def chain(make_server: ServerFactory) -> Iterator[RunningServer]:
    """A gateway whose assistant ``chain`` is answered by ``u0``, which fails with an error
    event mid-answer, then continued by ``u1``, which finishes."""
    first, second = ChaosUpstream(), ChaosUpstream()
    try:
        first.start().plan(SEED, "u0", faults=["error"], tokens_per_second=PACE)
        second.start().plan(SEED, "u1", faults=["finish"], tokens_per_second=PACE)
        yield make_server(
            upstreams=[
                {**FIRST, "base_url": first.base_url},
                {**SECOND, "base_url": second.base_url},
            ],
            assistants=[CHAIN],
            retry={"deadline": 5, "backoff_initial": 0.05, "backoff_max": 0.2},
        )
    finally:
        first.stop()
        second.stop()


# The text of an answer before its first marker (null: none), as a range selects it.
TEXT_BEFORE_MARKER = """(md) => {
    const marker = md.querySelector('.seam');
    if (!marker) return null;
    const range = document.createRange();
    range.setStart(md, 0);
    range.setEndBefore(marker);
    return range.toString();
}"""

# From the moment an answer first shows a marker, every change of the page is checked: still
# one marker (a re-render never loses it nor doubles it), at the same text.
WATCH_MARKERS = """() => {
    const seen = (window.markers = { first: null, later: [] });
    const before = (md, marker) => {
        const range = document.createRange();
        range.setStart(md, 0);
        range.setEndBefore(marker);
        return range.toString();
    };
    new MutationObserver(() => {
        const answer = [...document.querySelectorAll('.msg.assistant')].pop();
        const md = answer && answer.querySelector('.md');
        const markers = md ? [...md.querySelectorAll('.seam')] : [];
        if (!seen.first && !markers.length) return;
        const state = {
            count: markers.length,
            streaming: answer.classList.contains('streaming'),
            before: markers.length ? before(md, markers[0]) : null,
            text: md.textContent.trim(),
            title: markers.length ? markers[0].title : null,
        };
        if (!seen.first) seen.first = state;
        else seen.later.push(state);
    }).observe(document.body, { subtree: true, childList: true, characterData: true });
}"""


def last_answer_md(page: Page) -> Any:
    return answers(page).last


def test_the_page_marks_where_another_upstream_continued_the_answer(
    browser: Browser, chain: RunningServer, screenshots: Path
) -> None:
    question, written = seamed_question()
    whole = answer_text(SEED, question)
    context = open_context(browser, permissions=["clipboard-read", "clipboard-write"])
    try:
        page = context.new_page()
        errors = watch(page)
        page.goto(chain.url + "/")
        expect(page.get_by_label("Assistant")).to_contain_text("chain")
        page.evaluate(WATCH_MARKERS)
        ask(page, question, assistant="chain")
        wait_for_end(page)

        # live: the marker came while the answer typed, at the end of what the first upstream
        # wrote, and stayed there, alone, through every re-render until the end
        seen = page.evaluate("window.markers")
        first = seen["first"]
        assert first is not None, "no marker while the answer was written"
        assert first["streaming"] and first["count"] == 1 and first["before"] == written
        assert first["title"] == LABEL
        assert all(s["count"] == 1 and s["before"] == written for s in seen["later"])
        assert any(s["text"] == whole for s in seen["later"])  # the rest typed after it

        md = last_answer_md(page)
        assert md.inner_text() == whole
        assert md.evaluate(TEXT_BEFORE_MARKER) == written
        marker = md.locator(".seam")
        expect(marker).to_have_count(1)
        expect(marker).to_have_attribute("aria-label", LABEL)
        expect(marker).to_have_attribute("role", "img")
        expect(marker).to_be_visible()
        marker.hover()
        page.screenshot(path=screenshots / "failover-marker.png")

        # stored: the same text, the second part starting at the seam
        with httpx.Client(base_url=chain.url, timeout=10) as api:
            (stored,) = assistant_messages(api, conversation_id(page))
        assert stored["text"] == whole
        assert [s["upstream"] for s in stored["sources"]] == ["u0", "u1"]
        assert stored["sources"][1]["start"] == len(written)

        # copied: the text, without the marker (the Copy button, and a selection of it)
        answer = page.locator(".msg.assistant").last
        answer.hover()
        answer.get_by_role("button", name="Copy", exact=True).click()
        page.wait_for_function(
            "async (want) => (await navigator.clipboard.readText()) === want", arg=whole
        )
        selected = md.evaluate(
            "(md) => { getSelection().selectAllChildren(md); return getSelection().toString(); }"
        )
        assert selected.strip() == whole

        # reloaded: the stored answer shows the marker at the same place
        page.reload()
        md = last_answer_md(page)
        expect(md).to_have_text(whole)
        expect(md.locator(".seam")).to_have_count(1)
        expect(md.locator(".seam")).to_have_attribute("title", LABEL)
        assert md.evaluate(TEXT_BEFORE_MARKER) == written
        assert md.inner_text() == whole
        assert not errors, errors
    finally:
        context.close()


# The browser module on the gateway's own origin: every event, and the notice's data, in order.
FOLLOW_WITH_MODULE = """async ([question]) => {
    const { Typewriter } = await import('/typewriter.js');
    const tw = new Typewriter();
    const reply = await tw.ask(question, { assistant: 'chain' });
    const got = { text: '', notices: [], textAtNotice: [], names: [] };
    const stream = tw.follow(reply, {
        onDelta: (text) => { got.text += text; },
        onNotice: (data) => { got.notices.push(data); got.textAtNotice.push(got.text); },
        onEvent: (name) => { got.names.push(name); },
    });
    got.end = await stream.finished;
    return got;
}"""


def test_the_browser_module_passes_the_notice_on_between_the_two_parts(
    browser: Browser, chain: RunningServer
) -> None:
    question, written = seamed_question()
    context = open_context(browser)
    try:
        page = context.new_page()
        errors = watch(page)
        page.goto(chain.url + "/")
        got = page.evaluate(FOLLOW_WITH_MODULE, [question])
        assert got["notices"] == [
            {"code": "failover", "from": "u0", "to": "u1", "model": "m-second"}
        ]
        assert got["textAtNotice"] == [written]
        assert got["text"] == answer_text(SEED, question)
        assert got["names"].count("notice") == 1
        assert got["end"]["finish_reason"] == "stop"
        assert not errors, errors
    finally:
        context.close()


def test_a_stored_seam_after_an_emoji_is_placed_by_characters_not_units(page: Page) -> None:
    """The server counts a part's start in characters; the page's strings count UTF-16 units,
    two for an emoji."""
    text = "Smile 😀 then more"
    sources = [
        {"upstream": "u0", "model": "a", "start": 0, "end": 8},
        {"upstream": "u1", "model": "b", "start": 8, "end": len(text)},
    ]
    seams = page.evaluate(
        """async ([sources, text]) => {
            const link = document.querySelector('link[rel=modulepreload][href$="/js/answer.js"]');
            return (await import(link.href)).seamsFrom(sources, text);
        }""",
        [sources, text],
    )
    assert seams == [{"at": len(text[:8].encode("utf-16-le")) // 2, "upstream": "u1", "model": "b"}]
