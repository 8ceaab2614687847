"""The chat page in Simplified Chinese, in a real Chromium with a CJK font.

Every string the page shows or reads aloud is in one table (``js/i18n.js``) in English and
Chinese. A browser that prefers Chinese gets the page in Chinese, with ``<html lang>`` saying
so; the switch at the foot of the sidebar changes the language, is remembered, and keeps the
draft in the message box. In Chinese, no English word is left on screen, in an accessible
name, a tooltip or a placeholder (the product's name and key names aside) in the states a
reader meets: a new chat, a conversation with its answers and their actions, the list, the
help dialog and the sign-in dialog. Long Chinese titles, questions and answers fit a desktop
and a phone. Screenshots go to ``test-output/screenshots/zh-*.png``.

Two checks need no browser: every key is in both languages (with the same ``{name}``
placeholders), and the scripts hold no English sentence of their own outside the table.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from conftest import RunningServer, ServerFactory
from helpers import add_user
from web.chat_page import (
    NO_PAGE_SCROLL,
    NO_SIDEWAYS_SCROLL,
    STREAMING,
    open_context,
    simulate,
    uncovered,
    watch,
)

pytestmark = pytest.mark.integration

WEB = Path(__file__).parents[2] / "src" / "typewriter" / "web"
SCRIPTS = WEB / "js"
CJK_FONT = Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc")

# ASCII words a Chinese page may show: the product's name, key names, formats.
ALLOWED = ["typewriter", "API", "Enter", "Shift", "Ctrl", "Markdown"]

QUESTION = (
    "请用 Python 写一个函数，计算斐波那契数列的第 n 项，并说明它的时间复杂度和空间复杂度，"
    "最好再比较一下递归写法和迭代写法在大输入下的差别。\n\n"
    "```python\ndef fib(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n"
    "    return a\n```\n\n这个实现的时间复杂度是 O(n)，空间复杂度是 O(1)。"
)
LONG_TITLE = "关于服务器推送事件与长轮询在移动网络下的重连策略、电量消耗以及消息顺序保证的详细比较"

# Every ASCII word on screen (text, aria-label, title, placeholder, alt) that is not allowed.
# What the reader or the model wrote is not the page's: the question, the answer, titles of
# conversations, who answered, the pickers' options, key caps and code.
ENGLISH_ON_SCREEN = """(allowed) => {
    const theirs = '.bubble, .md, .answer-by, .brand, kbd, code, option, a.conversation, '
        + 'h1#title, .thinking-text, script, style';
    const skipped = (el) => !el.closest('.copy-code') && Boolean(el.closest(theirs));
    const allow = new Set(allowed);
    const found = [];
    const name = (el) => el.id ? `#${el.id}` : `${el.tagName.toLowerCase()}.${el.className}`;
    const check = (text, where) => {
        for (const word of text.match(/[A-Za-z][A-Za-z'’-]*/g) || []) {
            if (!allow.has(word)) found.push(`${where}: ${word} in "${text.trim().slice(0, 60)}"`);
        }
    };
    const shown = (el) => el.checkVisibility({ visibilityProperty: true });
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
        const el = node.parentElement;
        if (el && !skipped(el) && shown(el)) check(node.data, name(el));
    }
    for (const el of document.body.querySelectorAll('*')) {
        if (skipped(el) || !shown(el)) continue;
        for (const attribute of ['aria-label', 'title', 'placeholder', 'alt']) {
            const value = el.getAttribute(attribute);
            if (value) check(value, `${name(el)}[${attribute}]`);
        }
    }
    return found;
}"""

# Buttons, links and pickers on screen whose text is wider than their box or than the window.
OVERFLOWING = """() => [...document.querySelectorAll('button, select, label, a, h1, .hint')]
    .filter((el) => el.checkVisibility({ visibilityProperty: true }))
    .filter((el) => !el.closest('.md, .visually-hidden'))
    .filter((el) => {
        const box = el.getBoundingClientRect();
        const clipped = getComputedStyle(el).textOverflow === 'ellipsis';
        return (!clipped && el.scrollWidth > el.clientWidth + 1 && el.clientWidth > 0)
            || box.right > innerWidth + 0.5 || box.left < -0.5;
    })
    .map((el) => `${el.id || el.className}: ${el.textContent.trim().slice(0, 40)}`)"""

I18N_MODULE = """async () => {
    const link = document.querySelector('link[rel=modulepreload][href$="/js/i18n.js"]');
    return import(link.href);
}"""


def english_on_screen(page: Page, theirs: str = "") -> list[str]:
    """`theirs`: what the reader wrote that the page quotes (a title in a dialog)."""
    found: list[str] = page.evaluate(
        ENGLISH_ON_SCREEN, ALLOWED + re.findall(r"[A-Za-z][A-Za-z'’-]*", theirs)
    )
    return found


def overflowing(page: Page) -> list[str]:
    found: list[str] = page.evaluate(OVERFLOWING)
    return found


def chinese_context(browser: Browser, **options: Any) -> BrowserContext:
    """A browser that prefers Chinese, with a font to show it in the screenshots."""
    if not CJK_FONT.exists():
        pytest.fail(
            f"{CJK_FONT} is missing: run `make test` (scripts/ensure-test-services.sh installs "
            "Debian's fonts-noto-cjk)",
            pytrace=False,
        )
    return open_context(browser, locale="zh-CN", **options)


@pytest.fixture
def zh_page(browser: Browser, server: RunningServer) -> Iterator[Page]:
    context = chinese_context(browser)
    try:
        page = context.new_page()
        errors = watch(page)
        page.goto(server.url + "/")
        expect(page.get_by_label("助手")).to_have_value("default")
        yield page
        assert not errors, errors
    finally:
        context.close()


def message_box(page: Page) -> Any:
    return page.get_by_role("textbox", name="消息", exact=True)


def ask(page: Page, text: str) -> None:
    page.get_by_label("助手").select_option("echo")
    message_box(page).fill(text)
    message_box(page).press("Enter")


def wait_for_answer(page: Page) -> None:
    page.wait_for_function(STREAMING)
    expect(page.get_by_role("button", name="发送", exact=True)).to_be_visible()


# -- the table -----------------------------------------------------------------------------


def used_keys() -> set[str]:
    """The keys the scripts and index.html name."""
    keys: set[str] = set()
    for script in SCRIPTS.glob("*.js"):
        if script.name != "i18n.js":
            keys |= set(re.findall(r'\bt\(\s*"([\w.-]+)"', script.read_text("utf-8")))
    html = (WEB / "index.html").read_text("utf-8")
    keys |= set(re.findall(r'\bdata-i18n(?:-label|-title|-placeholder)?="([\w.-]+)"', html))
    return keys


def test_every_string_is_in_both_languages(zh_page: Page) -> None:
    strings: dict[str, dict[str, str]] = zh_page.evaluate(
        f"async () => (await ({I18N_MODULE})()).STRINGS"
    )
    assert set(strings) == {"en", "zh-CN"}
    english, chinese = strings["en"], strings["zh-CN"]
    assert sorted(english) == sorted(chinese), set(english) ^ set(chinese)
    for key, text in english.items():
        placeholders = set(re.findall(r"\{(\w+)\}", text))
        assert placeholders == set(re.findall(r"\{(\w+)\}", chinese[key])), key
        assert text.strip() and chinese[key].strip(), key
        if re.sub(r"\{\w+\}", "", chinese[key]):
            assert re.search(r"[\u4e00-\u9fff]", chinese[key]), f"{key}: {chinese[key]!r}"
    used = used_keys()
    assert used - set(english) == set(), "named but not in the table"
    assert set(english) - used == set(), "in the table but named nowhere"


# -- no English left in the scripts ----------------------------------------------------------

_WORD = re.compile(r"[A-Za-z_$][\w$]*|\d[\w.]*")
_REGEX_AFTER = set("(,=:[!&|?{};+-*%<>~^")
_KEYWORDS = {"return", "typeof", "case", "in", "of", "new", "delete", "void", "throw", "else"}


def literals(source: str) -> list[tuple[int, str]]:
    """The string and template literals of a JavaScript module: (offset, text), with each
    ``${…}`` of a template as ``{}``. A tokenizer just good enough for the page's modules:
    comments, regular expression literals and nested templates are told apart."""
    found: list[tuple[int, str]] = []

    def quoted(i: int, quote: str) -> tuple[int, str]:
        j, text = i + 1, []
        while source[j] != quote:
            if source[j] == "\\":
                text.append(source[j : j + 2])
                j += 2
            elif quote == "`" and source.startswith("${", j):
                text.append("{}")
                j = scan(j + 2, in_expression=True)
            else:
                text.append(source[j])
                j += 1
        return j + 1, "".join(text)

    def regex_end(i: int) -> int:
        j, in_class = i + 1, False
        while source[j] != "/" or in_class:
            if source[j] == "\\":
                j += 1
            elif source[j] == "[":
                in_class = True
            elif source[j] == "]":
                in_class = False
            j += 1
        j += 1
        while j < len(source) and source[j].isalpha():
            j += 1
        return j

    def scan(i: int, in_expression: bool = False) -> int:
        previous, depth = "", 0
        while i < len(source):
            c = source[i]
            if c.isspace():
                i += 1
            elif source.startswith("//", i):
                end = source.find("\n", i)
                i = len(source) if end < 0 else end
            elif source.startswith("/*", i):
                i = source.index("*/", i + 2) + 2
            elif c in "'\"`":
                start = i
                i, text = quoted(i, c)
                found.append((start, text))
                previous = "a"
            elif c == "/" and (not previous or previous in _REGEX_AFTER or previous in _KEYWORDS):
                i, previous = regex_end(i), "a"
            elif word := _WORD.match(source, i):
                i = word.end()
                previous = word.group() if word.group() in _KEYWORDS else "a"
            else:
                if in_expression and c == "{":
                    depth += 1
                elif in_expression and c == "}":
                    if depth == 0:
                        return i + 1
                    depth -= 1
                previous = c
                i += 1
        return i

    scan(0)
    return found


# Capitalized words that are code: key names, error names, HTTP methods and headers.
_CODE_WORDS = {
    "AbortError",
    "ApiError",
    "TypewriterError",
    "ArrowUp",
    "Enter",
    "Escape",
    "Files",
    "Home",
    "KeyN",
    "KeyO",
    "PageUp",
    "Content-Type",
    "Retry-After",
    "Bearer",
}
# Where a single lowercase word would be shown as it is: a text, a name, a tooltip.
_SHOWN = re.compile(
    r"(?:\.textContent|\.innerText|\.title|\.alt|\.placeholder)\s*=\s*(?:[^;=]*[?:]\s*)?$"
    r"|\bh\([^()]*,[^()]*,\s*$|\bmakeButton\(\s*$"
)


def english_in(source: str) -> list[str]:
    """The literals of `source` that read as English words for the reader."""
    flagged = []
    for offset, text in literals(source):
        bare = re.sub(r"\{\}", "", text).strip()
        if not re.search(r"[A-Za-z]{2}", bare) or re.search(r"[<>=/\[\]#]", bare):
            continue  # no word, or markup, a selector, a path
        words = re.findall(r"[A-Za-z][A-Za-z'’-]*", bare)
        line_start = source.rfind("\n", 0, offset) + 1
        before = source[line_start:offset]
        if set(words) <= set(ALLOWED) or re.search(r"\bconsole\.\w+\($", before):
            continue  # the product's name; a word for the console, not the reader
        sentence = len(words) > 1 and (
            any(w[0].isupper() for w in words) or bare[-1] in ".!?:…" or "’" in bare
        )
        capitalized = len(words) == 1 and re.match(r"[A-Z][a-z]", bare) and bare not in _CODE_WORDS
        shown = bool(_SHOWN.search(before))
        if sentence or capitalized or shown:
            flagged.append(f"line {source.count(chr(10), 0, offset) + 1}: {text!r}")
    return flagged


def test_the_scripts_hold_no_english_of_their_own() -> None:
    found = {
        script.name: english_in(script.read_text("utf-8"))
        for script in sorted(SCRIPTS.glob("*.js"))
        if script.name != "i18n.js"
    }
    found = {name: lines for name, lines in found.items() if lines}
    assert not found, f"strings to move into js/i18n.js: {found}"


def test_the_tokenizer_finds_what_it_should() -> None:
    source = (
        'const a = /["`]/g; // "not a string"\n'
        'const b = `x ${c ? "Inner words." : `deep ${d}`} y`;\n'
        "el.textContent = ok ? \"fine\" : 'code';\n"
        '/* "comment" */ h("div", "msg user", "label");\n'
        'const e = f / 2; const g = "Stop";\n'
    )
    assert [text for _, text in literals(source)] == [
        "Inner words.",
        "deep {}",
        "x {} y",
        "fine",
        "code",
        "div",
        "msg user",
        "label",
        "Stop",
    ]
    assert [line.split(": ", 1)[1] for line in english_in(source)] == [
        "'Inner words.'",
        "'fine'",
        "'code'",
        "'label'",
        "'Stop'",
    ]


# -- choosing the language --------------------------------------------------------------------


def test_the_language_follows_the_browser_and_the_switch(
    browser: Browser, server: RunningServer
) -> None:
    chosen: list[str] = []
    for locale in ["en-US", "zh-CN", "zh-TW"]:
        context = open_context(browser, locale=locale)
        try:
            page = context.new_page()
            page.goto(server.url + "/")
            page.wait_for_function("() => document.getElementById('assistant').options.length")
            chosen.append(page.evaluate("document.documentElement.lang"))
        finally:
            context.close()
    assert chosen == ["en", "zh-CN", "en"]  # traditional Chinese has no table: English

    context = chinese_context(browser)
    try:
        page = context.new_page()
        errors = watch(page)
        page.goto(server.url + "/")
        choose: list[str] = page.evaluate(
            f"""async () => {{
                const {{ chooseLanguage }} = await ({I18N_MODULE})();
                return [
                    [null, ['zh-Hans-CN']], [null, ['zh-SG']], [null, ['zh']],
                    [null, ['zh-Hant', 'zh-CN']], [null, ['zh-HK', 'fr']], [null, ['de', 'zh-CN']],
                    [null, ['en-GB', 'zh-CN']], [null, []], ['en', ['zh-CN']], ['xx', ['zh']],
                ].map(([stored, list]) => chooseLanguage(stored, list));
            }}"""
        )
        assert choose == ["zh-CN", "zh-CN", "zh-CN", "zh-CN", "en", "zh-CN", "en", "en", "en"] + [
            "zh-CN"
        ]
        expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
        expect(page.get_by_role("button", name="新对话")).to_be_visible()
        message_box(page).fill("还没写完的问题")
        switch = page.get_by_label("语言")
        expect(switch).to_have_value("zh-CN")
        with page.expect_navigation():
            switch.select_option("en")  # reloads in English, the draft carried over
        expect(page.locator("html")).to_have_attribute("lang", "en")
        expect(page.get_by_role("button", name="New chat")).to_be_visible()
        expect(page.get_by_role("textbox", name="Message", exact=True)).to_have_value(
            "还没写完的问题"
        )
        expect(page.get_by_label("Language")).to_have_value("en")
        assert page.evaluate("localStorage.getItem('typewriter.language')") == "en"
        page.reload()  # remembered over the browser's Chinese
        expect(page.get_by_role("heading", name="Ask anything")).to_be_visible()
        with page.expect_navigation():
            page.get_by_label("Language").select_option("zh-CN")
        expect(page.get_by_role("heading", name="有什么可以帮你的？")).to_be_visible()
        assert not errors, errors
    finally:
        context.close()


# -- the Chinese page ---------------------------------------------------------------------------


def test_the_chinese_page_has_no_english_and_fits(
    zh_page: Page, browser: Browser, server: RunningServer, screenshots: Path
) -> None:
    page = zh_page
    with httpx.Client(base_url=server.url, timeout=10) as api:
        for title in [LONG_TITLE, "周末去杭州玩两天，行程怎么安排比较好？"]:
            reply = api.post("/v1/chat", json={"message": "你好", "assistant": "echo"})
            assert reply.status_code == 202, reply.text
            cid = reply.json()["conversation_id"]
            renamed = api.patch(f"/v1/conversations/{cid}", json={"title": title})
            assert renamed.status_code == 200, renamed.text
    page.reload()
    expect(page.locator("a.conversation")).to_have_count(2)
    expect(page.get_by_role("heading", name="今天")).to_be_visible()
    expect(page.get_by_role("heading", level=1)).to_have_text("新对话")
    assert english_on_screen(page) == []
    page.screenshot(path=screenshots / "zh-welcome.png")

    simulate(page, tokens_per_second=1000)
    ask(page, QUESTION)
    wait_for_answer(page)
    page.get_by_role("button", name="重新生成").click()
    wait_for_answer(page)
    expect(page.locator(".pager .count")).to_have_attribute("aria-label", "第 2 个回答，共 2 个")
    for name in ["复制", "喜欢", "不喜欢", "重新生成", "上一个回答"]:
        expect(page.get_by_role("button", name=name, exact=True)).to_be_visible()
    expect(page.get_by_role("button", name="复制代码")).to_be_visible()
    expect(page.get_by_role("button", name="导出为 Markdown")).to_be_visible()
    page.get_by_role("button", name="喜欢", exact=True).click()
    expect(page.get_by_role("button", name="提交反馈")).to_be_visible()
    expect(page.locator(".feedback-label")).to_contain_text("补充说明（可选）")
    assert english_on_screen(page) == []
    assert overflowing(page) == []
    assert page.evaluate(NO_SIDEWAYS_SCROLL)
    page.locator(".feedback-form").scroll_into_view_if_needed()
    page.screenshot(path=screenshots / "zh-conversation.png")
    page.get_by_role("button", name="关闭", exact=True).click()

    page.locator("body").press("?")
    help_dialog = page.get_by_role("dialog", name="键盘快捷键")
    expect(help_dialog).to_be_visible()
    assert english_on_screen(page) == []
    page.screenshot(path=screenshots / "zh-help.png")
    help_dialog.get_by_role("button", name="关闭").click()

    page.get_by_role("button", name="删除对话").click()
    confirm = page.get_by_role("dialog", name="删除此对话？")
    expect(confirm).to_be_visible()
    assert english_on_screen(page, theirs=QUESTION) == []
    confirm.get_by_role("button", name="取消").click()

    page.get_by_role("button", name="重命名对话").click()
    expect(page.get_by_role("textbox", name="对话标题")).to_be_focused()
    assert english_on_screen(page) == []
    page.get_by_role("button", name="取消", exact=True).click()
    page.get_by_role("searchbox", name="搜索对话").fill("没有这句话")
    expect(page.locator("#no-conversations")).to_have_text("没有包含“没有这句话”的对话。")
    assert english_on_screen(page) == []
    page.get_by_role("searchbox", name="搜索对话").fill("")
    expect(page.locator("a.conversation")).to_have_count(3)

    # a phone: the same conversation, then the list over it
    phone_context = chinese_context(browser, viewport={"width": 390, "height": 844})
    try:
        phone = phone_context.new_page()
        errors = watch(phone)
        phone.goto(page.url)
        expect(phone.locator(".msg.assistant .md")).to_have_count(1)
        expect(phone.get_by_role("button", name="复制", exact=True)).to_be_visible()
        assert phone.evaluate(NO_SIDEWAYS_SCROLL)
        assert phone.evaluate(NO_PAGE_SCROLL), "the page scrolls, not just the log"
        for control in (message_box(phone), phone.get_by_role("button", name="发送", exact=True)):
            assert uncovered(control), f"{control} is out of sight or covered"
        assert overflowing(phone) == []
        assert english_on_screen(phone) == []
        phone.screenshot(path=screenshots / "zh-phone.png")
        phone.get_by_role("button", name="对话", exact=True).click()
        phone.wait_for_function(
            "() => document.getElementById('sidebar').getBoundingClientRect().x === 0"
        )
        expect(phone.get_by_label("语言")).to_be_visible()
        assert overflowing(phone) == []
        assert english_on_screen(phone) == []
        phone.screenshot(path=screenshots / "zh-phone-sidebar.png")
        assert not errors, errors
    finally:
        phone_context.close()

    # how an answer ended, and the notice above the message box
    page.unroute("**/v1/chat")
    simulate(page, tokens_per_second=10)
    ask(page, "请慢慢地把这句话重复一遍，一个字一个字地写出来，不要着急。")
    expect(page.locator(".msg.assistant.streaming")).to_have_count(1)
    page.get_by_role("button", name="停止", exact=True).click()
    wait_for_answer(page)
    expect(page.locator(".answer-note").last).to_have_text("已停止。")
    page.context.set_offline(True)
    expect(page.get_by_role("alert")).to_contain_text("你已离线。")
    assert english_on_screen(page) == []
    assert overflowing(page) == []
    page.screenshot(path=screenshots / "zh-stopped-offline.png")
    page.context.set_offline(False)
    expect(page.get_by_role("alert")).to_be_hidden()


def test_signing_in_in_chinese(
    browser: Browser, make_server: ServerFactory, tmp_path: Path, screenshots: Path
) -> None:
    key = add_user(tmp_path, "reader")
    server = make_server(data_dir=tmp_path)
    context = chinese_context(browser)
    try:
        page = context.new_page()
        errors = watch(page)
        page.goto(server.url + "/")
        dialog = page.get_by_role("dialog", name="登录")
        expect(dialog).to_be_visible()
        expect(dialog).to_contain_text("此 typewriter 需要 API 密钥。")
        assert english_on_screen(page) == []
        dialog.get_by_label("API 密钥").fill("tw_not_a_key")
        dialog.get_by_role("button", name="登录").click()
        expect(dialog.get_by_role("alert")).to_have_text("该密钥被拒绝：请检查，或索取新的密钥。")
        assert english_on_screen(page) == []
        assert overflowing(page) == []
        page.screenshot(path=screenshots / "zh-sign-in.png")
        dialog.get_by_label("API 密钥").fill(key)
        dialog.get_by_role("button", name="登录").click()
        expect(dialog).to_be_hidden()
        expect(page.get_by_role("button", name="退出登录")).to_be_visible()
        expect(page.get_by_label("助手")).to_have_value("default")
        assert english_on_screen(page) == []
        assert not errors, errors
    finally:
        context.close()
