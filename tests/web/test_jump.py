""" "Jump to latest" never covers a notice: not the alert above the message box, not the note
under an answer (a failure, a cut) that the reader scrolled to the bottom of the log.

Checked with the boxes Chromium lays out, in a small window and a phone's, while an answer is
being written and the reader has scrolled up to read an earlier one.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from conftest import RunningServer
from web.chat_page import (
    ask,
    open_context,
    simulate,
    uncovered,
    wait_for_end,
    watch,
    words,
)

pytestmark = pytest.mark.integration

# Scroll the log so that `element` ends 4 px above the log's bottom edge: where the reader
# who scrolled up finds it, right under where a floating button would be.
TO_LOG_BOTTOM = """(element) => {
    const log = document.querySelector('.log');
    const below = element.getBoundingClientRect().bottom - log.getBoundingClientRect().bottom;
    log.scrollTop += below + 4;
}"""


def apart(page: Page, first: Locator, second: Locator) -> bool:
    """The two boxes share no pixel."""
    page.evaluate("() => new Promise((done) => requestAnimationFrame(() => done()))")
    a, b = first.bounding_box(), second.bounding_box()
    assert a and b, "not laid out"
    return (
        a["x"] + a["width"] <= b["x"]
        or b["x"] + b["width"] <= a["x"]
        or a["y"] + a["height"] <= b["y"]
        or b["y"] + b["height"] <= a["y"]
    )


@pytest.mark.parametrize(
    "viewport",
    [{"width": 800, "height": 500}, {"width": 390, "height": 664}],
    ids=["small-window", "phone"],
)
def test_jump_to_latest_never_covers_a_notice(
    browser: Browser, server: RunningServer, screenshots: Path, viewport: dict[str, int]
) -> None:
    context = open_context(browser, viewport=viewport)
    try:
        page = context.new_page()
        errors = watch(page)
        page.goto(server.url + "/")
        ask(page, "a first answer, fine")
        wait_for_end(page)
        simulate(page, fail_after_tokens=2)
        ask(page, "a second answer that fails")
        wait_for_end(page)
        failed = page.locator(".msg.assistant .answer-note").nth(1)  # the second answer's
        expect(failed).to_be_visible()
        page.unroute("**/v1/chat")
        simulate(page, tokens_per_second=20)
        ask(page, words(400))  # 2,000 characters: 25 s, long enough to scroll up meanwhile
        page.wait_for_function(
            "() => { const log = document.querySelector('.log');"
            " return log.scrollHeight > log.clientHeight + 400; }"
        )
        page.locator(".log").hover()
        page.mouse.wheel(0, -200)
        jump = page.get_by_role("button", name="Jump to latest")
        expect(jump).to_be_visible()

        # the failed answer's note at the bottom of the log, where the reader scrolled to
        failed.evaluate(TO_LOG_BOTTOM)
        expect(jump).to_be_visible()
        assert apart(page, jump, failed), "Jump to latest covers the answer's note"
        assert uncovered(failed)

        # an alert above the message box: rating the first answer fails
        page.route(
            "**/feedback",
            lambda route: route.fulfill(
                status=503,
                headers={"Content-Type": "application/json"},
                body=json.dumps({"error": {"code": "store_unavailable", "message": "busy"}}),
            ),
        )
        page.locator(".msg.assistant").first.get_by_role("button", name="Good answer").click()
        alert = page.get_by_role("alert")
        expect(alert).to_contain_text("The server could not do that")
        failed.evaluate(TO_LOG_BOTTOM)
        expect(jump).to_be_visible()
        assert apart(page, jump, alert), "Jump to latest covers the alert"
        assert apart(page, jump, failed), "Jump to latest covers the answer's note"
        for control in (failed, alert.get_by_role("button", name="Dismiss")):
            assert uncovered(control), f"{control} is covered"
        page.screenshot(path=screenshots / f"jump-and-notices-{viewport['width']}.png")

        jump.click()
        expect(jump).to_be_hidden()
        page.get_by_role("button", name="Stop", exact=True).click()
        wait_for_end(page)
        assert not errors, errors
    finally:
        context.close()
