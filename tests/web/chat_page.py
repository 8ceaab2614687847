"""Driving the chat page in Playwright: asking, waiting for an answer's end, reading what it shows.

Every wait is on a condition (Playwright's ``expect`` and ``wait_for_function``), never a fixed
sleep. The fixtures that open Chromium and the page are in ``conftest.py`` next to this module.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, Route, expect

WAIT_MS = 20_000
STREAMING = "() => !document.querySelector('.msg.assistant.streaming')"

expect.set_options(timeout=WAIT_MS)


def words(count: int, start: int = 1) -> str:
    """Plain text that Markdown shows unchanged, where a gap or a repeat is easy to see."""
    return " ".join(f"w{n:04d}" for n in range(start, start + count))


class PageErrors(list[str]):
    """Uncaught exceptions and console errors of a page; a test ends with none."""


def open_context(browser: Browser, **options: Any) -> BrowserContext:
    options.setdefault("viewport", {"width": 1280, "height": 800})
    options.setdefault("locale", "en-US")  # the page speaks the browser's language: English
    context = browser.new_context(**options)
    context.set_default_timeout(WAIT_MS)
    return context


def watch(page: Page) -> PageErrors:
    errors = PageErrors()
    page.on("pageerror", lambda error: errors.append(f"pageerror: {error}"))

    def console(message: ConsoleMessage) -> None:
        # A refused request (404, 429, no network) is logged by the browser itself; the page
        # handles those. Anything else (a script error, a CSP violation) is a failure.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            errors.append(f"console: {message.text}")

    page.on("console", console)
    return errors


def message_box(page: Page) -> Any:
    return page.get_by_role("textbox", name="Message", exact=True)


def ask(page: Page, text: str, assistant: str = "echo") -> None:
    page.get_by_label("Assistant").select_option(assistant)
    message_box(page).fill(text)
    message_box(page).press("Enter")


def wait_for_end(page: Page) -> None:
    page.wait_for_function(STREAMING)
    expect(page.get_by_role("button", name="Send", exact=True)).to_be_visible()


def answers(page: Page) -> Any:
    return page.locator(".msg.assistant .md")


def shown(page: Page) -> str:
    text: str = answers(page).last.inner_text()
    return text


def with_options(page: Page, **options: Any) -> None:
    """Ask with these ``options`` (``max_tokens``, ``simulate``…) in every /v1/chat."""

    def rewrite(route: Route) -> None:
        body = json.loads(route.request.post_data or "{}")
        body["options"] = options
        route.continue_(post_data=json.dumps(body))

    page.route("**/v1/chat", rewrite)


def simulate(page: Page, **options: Any) -> None:
    """Ask the simulated model for these options (pace, failures) in every /v1/chat."""
    with_options(page, simulate=options)


NO_SIDEWAYS_SCROLL = "document.documentElement.scrollWidth <= window.innerWidth"
NO_PAGE_SCROLL = f"({NO_SIDEWAYS_SCROLL}) && document.documentElement.scrollHeight <= innerHeight"

# Whole inside the window (and the log's box, for what is in the log), and on top at its
# middle: a reader can see it, and a click there reaches it.
UNCOVERED = """(element) => {
    const box = element.getBoundingClientRect();
    const inside = (outer) => box.top >= outer.top && box.bottom <= outer.bottom
        && box.left >= outer.left && box.right <= outer.right;
    const log = element.closest('.log');
    const hit = document.elementFromPoint(box.left + box.width / 2, box.top + box.height / 2);
    return box.width > 0 && box.height > 0
        && inside({ top: 0, left: 0, bottom: innerHeight, right: innerWidth })
        && (!log || inside(log.getBoundingClientRect()))
        && (hit === element || element.contains(hit));
}"""


def uncovered(locator: Any) -> bool:
    seen: bool = locator.evaluate(UNCOVERED)
    return seen


def wait_for_length(page: Page, length: int) -> None:
    page.wait_for_function(
        "(n) => { const all = document.querySelectorAll('.msg.assistant .md');"
        " const last = all[all.length - 1]; return last && last.innerText.length >= n; }",
        arg=length,
    )


def conversation_id(page: Page) -> str:
    ids = parse_qs(urlparse(page.url).query).get("c")
    assert ids, f"no conversation in the URL {page.url}"
    return ids[0]


def conversation(api: httpx.Client, cid: str) -> dict[str, Any]:
    response = api.get(f"/v1/conversations/{cid}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def assistant_messages(api: httpx.Client, cid: str) -> list[dict[str, Any]]:
    return [m for m in conversation(api, cid)["messages"] if m["role"] == "assistant"]


def sign_in(page: Page, key: str) -> None:
    """Give ``key`` to the page's sign-in dialog (auth on) and wait for it to close."""
    dialog = page.get_by_role("dialog", name="Sign in")
    expect(dialog).to_be_visible()
    dialog.get_by_label("API key").fill(key)
    dialog.get_by_role("button", name="Sign in").click()
    expect(dialog).to_be_hidden()
