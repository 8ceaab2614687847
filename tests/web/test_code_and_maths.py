"""Code and maths in answers, and an answer's growing end while it types.

In a real Chromium against a real gateway (the page's strict CSP included: a refused inline
style is a console error, which fails the test): code in a known language is highlighted, in
the light and the dark scheme, and other code stays plain; formulas ($…$, \\(…\\), $$…$$,
\\[…\\]) are typeset as MathML, prices are not formulas, and KaTeX's linking and HTML commands
give nothing that links or runs. Without the two libraries the page still answers. While an
answer types, half-written Markdown (a lone backtick, an open bold, half a formula, a table
before its delimiter row) never shows as raw syntax: each prefix of an answer is rendered as
the page renders a live one, and a streamed answer is watched on every DOM change; a finished
answer shows its text as written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Route, expect

from conftest import RunningServer
from web.chat_page import answers, ask, open_context, simulate, wait_for_end, watch

pytestmark = pytest.mark.integration

CODE = (
    "Some Python, for $e^{i\\pi} + 1 = 0$:\n\n"
    "```python\n"
    "def greet(name: str) -> str:\n"
    '    """Say hello."""\n'
    '    return f"Hello, {name}!"  # a comment\n'
    "\n"
    "print(greet('world'), 42)\n"
    "```\n\n"
    "And a language nobody knows:\n\n"
    "```nosuchlanguage\n"
    "def not highlighted 42\n"
    "```\n"
)

FORMULAS = (
    "Euler's identity $e^{i\\pi} + 1 = 0$ and Pythagoras \\(a^2 + b^2 = c^2\\) inline,"
    " \\(p and q\\) too.\n\n"
    "$$\\int_0^1 x^2\\,dx = \\frac{1}{3}$$\n\n"
    "\\[\\sum_{n=1}^{\\infty} \\frac{1}{n^2} = \\frac{\\pi^2}{6}\\]\n\n"
    "It costs $5 and $10, and `$x$` in code is code. A slip, $x^^2$, stays as written.\n"
)

# What a live answer goes through while it types: prefixes of it, one character at a time.
TYPED = (
    "Intro with `code`, **bold** and *soft* words, and $x^2$ inline.\n\n"
    "| name | value |\n"
    "|------|-------|\n"
    "| a | 1 |\n"
    "| b | 2 |\n\n"
    "```python\n"
    "def f(x):\n"
    "    return x + 1\n"
    "```\n\n"
    "$$\\frac{a}{b}$$\n\n"
    "Then \\(y = 2\\) and more **words** at the end.\n"
)

# Raw syntax a reader must never see in this answer's text while it types (none of it is in
# the rendered answer: the code has no backtick, no pipe, no dollar).
RAW = ["`", "**", "$", "|", "\\(", "\\)", "\\[", "*soft"]

MODULE = """async (url) => {
    const module = await import(url);
    await module.markdownReady;
    return module;
}"""


def module_url(page: Page) -> str:
    url: str = page.evaluate(
        "document.querySelector('link[rel=modulepreload][href$=\"/js/markdown.js\"]').href"
    )
    return url


def evaluate(page: Page, body: str, arg: Any = None) -> Any:
    """Run ``body`` (a function of ``(m, arg)``, ``m`` the page's markdown.js) on the page."""
    return page.evaluate(
        f"async ([url, arg]) => {{ const m = await import(url); await m.markdownReady;"
        f" return ({body})(m, arg); }}",
        [module_url(page), arg],
    )


def color(page: Page, selector: str) -> str:
    value: str = page.locator(selector).first.evaluate("e => getComputedStyle(e).color")
    return value


# -- highlighting -----------------------------------------------------------------------------


def test_code_in_a_known_language_is_highlighted_in_light_and_dark(
    browser: Browser, server: RunningServer, screenshots: Path
) -> None:
    colors = {}
    for scheme in ("light", "dark"):
        context = open_context(browser, color_scheme=scheme)
        try:
            page = context.new_page()
            errors = watch(page)
            page.goto(server.url + "/")
            ask(page, CODE)
            wait_for_end(page)
            answer = answers(page).last
            python, unknown = answer.locator("pre code").all()
            expect(python.locator(".hljs-keyword").first).to_have_text("def")
            expect(python.locator(".hljs-string").first).to_have_text('"""Say hello."""')
            expect(python.locator(".hljs-comment")).to_have_text("# a comment")
            expect(python.locator(".hljs-number")).to_have_text("42")
            # the code's text is unchanged by its colours (Copy code copies it)
            assert python.text_content() == CODE.split("```python\n")[1].split("```")[0]
            # a language highlight.js does not know stays plain
            assert unknown.locator("span").count() == 0
            assert unknown.text_content() == "def not highlighted 42\n"
            expect(answer.locator(".code-lang")).to_have_text(["python", "nosuchlanguage"])
            keyword = color(page, ".md .hljs-keyword")
            plain = python.evaluate("e => getComputedStyle(e).color")
            assert keyword != plain, "keywords are not coloured"
            colors[scheme] = (keyword, color(page, ".md .hljs-string"), plain)
            # a formula takes the text's colour, whichever the scheme
            expect(answer.locator("math")).to_be_visible()
            assert color(page, ".md math") == answer.evaluate("e => getComputedStyle(e).color")
            page.screenshot(path=screenshots / f"code-{scheme}.png")
            assert not errors, errors
        finally:
            context.close()
    assert colors["light"] != colors["dark"], "the dark scheme has no colours of its own"


def test_a_growing_code_block_is_coloured_once_it_is_closed(page: Page) -> None:
    """A code block is coloured when its fence closes, not anew at each frame while it types:
    the frames of a 300-line block stay well under 16 ms (colouring it at every frame took
    about 65 ms a frame at 300 lines on the test machine), and the block is coloured once, at
    its end."""
    lines = [f"def f{n}(x):\n    return x * {n} + len('{n}')  # line {n}\n" for n in range(150)]
    timing: dict[str, Any] = evaluate(
        page,
        """(m, lines) => {
            const box = document.createElement('div');
            document.body.append(box);
            const view = new m.MarkdownView(box);
            let text = '```python\\n';
            const times = [];
            let coloured = 0;
            for (const line of lines) {
                text += line;
                const start = performance.now();
                view.render(text, { growing: true });
                times.push(performance.now() - start);
                coloured += box.querySelectorAll('.hljs-keyword').length;
            }
            view.render(text);  // ended without its closing fence: coloured all the same
            const unclosed = box.querySelectorAll('.hljs-keyword').length;
            const start = performance.now();
            view.render(text + '```\\n', { growing: true });
            const closing = performance.now() - start;
            const label = box.querySelector('.code-lang').textContent;
            const spans = box.querySelectorAll('.hljs-keyword').length;
            box.remove();
            times.sort((a, b) => a - b);
            return { median: times[times.length >> 1], p95: times[Math.floor(times.length * 0.95)],
                     closing, coloured, unclosed, spans, label };
        }""",
        lines,
    )
    print(f"\n300 lines of Python typed a line a frame: {timing}")
    assert timing["label"] == "python"
    assert timing["coloured"] == 0  # plain while typed
    assert timing["spans"] == timing["unclosed"] == 300  # coloured once closed or ended
    assert timing["median"] < 8, timing
    assert timing["p95"] < 16, timing


# -- maths ------------------------------------------------------------------------------------


def test_formulas_are_typeset_as_mathml(page: Page, screenshots: Path) -> None:
    ask(page, FORMULAS)
    wait_for_end(page)
    answer = answers(page).last
    maths = answer.locator("math")
    expect(maths).to_have_count(5)
    expect(answer.locator('math[display="block"]')).to_have_count(2)
    expect(answer.locator("mfrac")).to_have_count(3)
    expect(answer.locator("msup").first).to_be_visible()
    text = answer.inner_text()
    for source in ("\\frac", "e^{i", "\\int", "\\sum", "a^2 + b^2", "\\(", "\\[", "p and q"):
        assert source not in text, f"{source!r} shown as text: {text!r}"
    assert "It costs $5 and $10, and $x$ in code is code." in text  # prices and code: as written
    expect(answer.locator("code")).to_have_text(["$x$", "$x^^2$"])
    expect(answer.locator(".maths-error")).to_have_text("$x^^2$")  # KaTeX refused it
    for formula in maths.all():
        box = formula.bounding_box()
        assert box and box["width"] > 20 and box["height"] > 10, box
    # the two displayed formulas stand on lines of their own, wider apart than a line of text
    display = answer.locator('math[display="block"]').first.bounding_box()
    assert display and display["height"] > 30, display
    page.screenshot(path=screenshots / "maths.png")


def test_formulas_cannot_link_style_or_run(page: Page, screenshots: Path) -> None:
    hostile = (
        "$\\href{javascript:window.pwned=1}{click me}$ and "
        "$\\url{javascript:window.pwned=1}$ and "
        "$\\htmlClass{skip}{x}$ $\\htmlId{evil}{y}$ $\\htmlStyle{color: red}{z}$ "
        "$\\htmlData{foo=bar}{w}$ $\\includegraphics[height=1em]{/favicon.png}$\n\n"
        "$$\\text{</math><img src=x onerror=window.pwned=1>}$$\n\n"
        "$x</math><img src=x onerror=window.pwned=1>$\n"
    )
    ask(page, hostile)
    wait_for_end(page)
    answer = answers(page).last
    expect(answer.locator("math")).to_have_count(9)
    # the HTML inside \text is text in the formula
    expect(answer.locator("math mtext")).to_contain_text(["</math><img src=x"])
    bad = "img, script, iframe, [href], [style], [onerror], #evil, .skip, [data-foo], a"
    assert answer.locator(bad).count() == 0, answer.inner_html()
    for formula in answer.locator("math").all():
        formula.click()
    page.screenshot(path=screenshots / "maths-hostile.png")
    assert page.evaluate("window.pwned") is None
    assert page.url.startswith("http")


def test_without_highlighter_and_typesetter_the_page_still_answers(
    browser: Browser, server: RunningServer
) -> None:
    context = open_context(browser)
    try:
        page = context.new_page()
        errors = watch(page)

        refused: list[str] = []

        def refuse(route: Route) -> None:
            refused.append(route.request.url.rsplit("/", 1)[-1])
            route.fulfill(status=404, body="")

        page.route("**/vendor/highlight.js", refuse)
        page.route("**/vendor/katex.js", refuse)
        page.goto(server.url + "/")
        ask(page, "**Still Markdown**, $x^2$ as written.\n\n```python\ndef f(): pass\n```\n")
        wait_for_end(page)
        answer = answers(page).last
        expect(answer.locator("strong")).to_have_text("Still Markdown")
        expect(answer).to_contain_text("$x^2$ as written.")
        expect(answer.locator("pre code")).to_have_text("def f(): pass\n")
        assert answer.locator("pre code span, math").count() == 0
        assert set(refused) == {"highlight.js", "katex.js"}  # asked for, and done without
        assert not errors, errors
    finally:
        context.close()


# -- the growing end --------------------------------------------------------------------------


def test_the_growing_end_is_settled(page: Page) -> None:
    cases = {
        "Hello `": "Hello ",
        "Hello `co": "Hello `co`",
        "a **b": "a **b**",
        "a **": "a ",
        "a **bold*": "a **bold**",
        "x *it": "x *it*",
        "2*3": "2*3",
        "x $": "x ",
        "x $a^2": "x ",
        "x $a^2$ y": "x $a^2$ y",
        "x \\(a": "x ",
        "$$\\int": "",
        "It costs $5 and more": "It costs $5 and more",
        "Text\n\n| a | b |": "Text\n\n",
        "Text\n\n| a | b |\n|--": "Text\n\n",
        "| a | b |\n|---|---|": "| a | b |\n|---|---|",
        "| a | b |\n|---|---|\n| 1": "| a | b |\n|---|---|\n| 1",
        "```py": "",
        "```python\nx = 1": "```python\nx = 1",
        "```python\nx = `a **b": "```python\nx = `a **b",
        "```python\nx = 1\n``": "```python\nx = 1",
        "- item\n- ": "- item\n",
        "Title\n\n#": "Title\n\n",
    }
    settled: dict[str, str] = evaluate(
        page,
        "(m, cases) => Object.fromEntries(cases.map((c) => [c, m.settleGrowingEnd(c)]))",
        list(cases),
    )
    assert settled == cases
    # a finished answer is shown as written, unfinished syntax and all
    written = ["a **b", "costs $5", "| a | b |", "x `y"]
    shown: list[str] = evaluate(
        page,
        """(m, texts) => texts.map((text) => {
            const box = document.createElement('div');
            new m.MarkdownView(box).render(text);
            return box.textContent;
        })""",
        written,
    )
    assert [s.strip() for s in shown] == written


def test_unfinished_markdown_never_shows_as_syntax(page: Page) -> None:
    """Every prefix of an answer, rendered as a live answer is: no raw syntax, and no table,
    formula or code block that appears and goes again."""
    frames: dict[str, Any] = evaluate(
        page,
        """(m, [text, raw]) => {
            const box = document.createElement('div');
            box.className = 'md';
            document.body.append(box);
            const view = new m.MarkdownView(box);
            const seen = [];
            const most = { table: 0, math: 0, pre: 0 };
            const lost = [];
            for (let n = 1; n <= text.length; n++) {
                view.render(text.slice(0, n), { growing: true });
                const shown = box.innerText;
                const found = raw.filter((r) => shown.includes(r));
                if (found.length) seen.push([text.slice(0, n), found, shown]);
                for (const tag of Object.keys(most)) {
                    const count = box.querySelectorAll(tag).length;
                    if (count < most[tag]) lost.push([text.slice(0, n), tag]);
                    most[tag] = Math.max(most[tag], count);
                }
            }
            view.render(text);
            const final = { table: box.querySelectorAll('table').length,
                math: box.querySelectorAll('math').length,
                pre: box.querySelectorAll('pre').length, text: box.innerText };
            box.remove();
            return { seen: seen.slice(0, 5), lost: lost.slice(0, 5), final };
        }""",
        [TYPED, RAW],
    )
    assert frames["seen"] == [], frames["seen"]
    assert frames["lost"] == [], frames["lost"]
    final = frames["final"]
    assert (final["table"], final["math"], final["pre"]) == (1, 3, 1), final


WATCH_RAW = """(raw) => {
    window.rawSeen = [];
    window.tables = 0;
    const check = () => {
        const md = [...document.querySelectorAll('.msg.assistant .md')].pop();
        if (!md) return;
        const text = md.innerText;
        for (const r of raw) if (text.includes(r)) window.rawSeen.push([r, text]);
        window.tables = Math.max(window.tables, md.querySelectorAll('table').length);
    };
    new MutationObserver(check).observe(document.body,
        { subtree: true, childList: true, characterData: true });
}"""


def test_a_streamed_answer_never_flashes_raw_syntax(page: Page, screenshots: Path) -> None:
    page.evaluate(WATCH_RAW, RAW)
    simulate(page, tokens_per_second=40)
    ask(page, TYPED)
    expect(answers(page).last.locator("table")).to_be_visible()
    page.screenshot(path=screenshots / "typing-table.png")
    wait_for_end(page)
    answer = answers(page).last
    expect(answer.locator("math")).to_have_count(3)
    expect(answer.locator("pre code .hljs-keyword")).to_have_text(["def", "return"])
    seen = page.evaluate("window.rawSeen")
    assert seen == [], seen[:3]
    page.screenshot(path=screenshots / "typed-code-and-maths.png")
