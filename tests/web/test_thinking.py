"""The model's reasoning on the page: a "Thinking" block that types live, then folds.

In a real Chromium against a real gateway whose assistant reasons (the scripted upstream
replays vLLM's ``reasoning_content`` stream, paced, then the answer): while the model thinks
the block is open and grows; when the answer's first piece arrives it folds; a click opens it
again; after a reload the stored answer shows it folded, with the whole reasoning inside.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from conftest import ServerFactory
from upstream import shapes
from upstream.control import Upstream
from web.chat_page import ask, open_context, wait_for_end, watch

pytestmark = pytest.mark.integration

STEPS = [f"Step {n}: weigh option {n}.\n" for n in range(1, 9)]
ANSWER = ["The answer ", "is **42**."]


@pytest.fixture
def page(browser: Browser, upstream: Upstream, make_server: ServerFactory) -> Iterator[Page]:
    server = make_server(
        upstreams=[{"name": "r", "base_url": upstream.base_url, "headers_timeout": 5}],
        assistants=[
            {"name": "up", "model": "reasoner"},
            {"name": "quiet", "model": "reasoner", "reasoning": "hide"},
        ],
    )
    context = open_context(browser)
    page = context.new_page()
    errors = watch(page)
    page.goto(server.url + "/")
    expect(page.get_by_label("Assistant")).not_to_have_value("")
    try:
        yield page
    finally:
        context.close()
    assert not errors, errors


def thinking(page: Page) -> Locator:
    return page.locator(".msg.assistant .thinking").last


def test_the_thinking_block_types_live_folds_when_the_answer_begins_and_reopens(
    page: Page, upstream: Upstream, screenshots: Path
) -> None:
    upstream.script({"chunks": shapes.vllm_reasoning(STEPS, ANSWER), "tokens_per_second": 5})
    ask(page, "What is the answer?", assistant="up")

    block = thinking(page)
    text = block.locator(".thinking-text")
    expect(text).to_contain_text("Step 2")  # typing, before the answer
    expect(block).to_have_attribute("open", "")
    expect(block.locator("summary")).to_have_text("Thinking")
    assert "Step 8" not in text.inner_text()  # not all of it yet: it arrives live
    assert page.locator(".msg.assistant .md").last.inner_text() == ""
    expect(text).to_contain_text("Step 4")  # and it grows
    expect(block).to_have_attribute("open", "")
    page.screenshot(path=screenshots / "thinking-live.png")

    expect(page.locator(".msg.assistant .md").last).to_contain_text("The answer")
    expect(block).not_to_have_attribute("open", "")  # folded when the answer began
    expect(text).to_be_hidden()
    wait_for_end(page)
    expect(page.locator(".msg.assistant .md").last).to_have_text("The answer is 42.")
    page.screenshot(path=screenshots / "thinking-folded.png")

    block.locator("summary").click()  # the reader opens it again
    expect(block).to_have_attribute("open", "")
    expect(text).to_be_visible()
    assert text.inner_text().strip() == "".join(STEPS).strip()
    page.screenshot(path=screenshots / "thinking-reopened.png")

    page.reload()  # the stored answer: folded, whole
    block = thinking(page)
    expect(block).to_be_visible()
    expect(block).not_to_have_attribute("open", "")
    block.locator("summary").click()
    expect(block.locator(".thinking-text")).to_contain_text("Step 8: weigh option 8.")
    expect(page.locator(".msg.assistant .md").last).to_have_text("The answer is 42.")


def test_only_answers_that_show_reasoning_have_a_thinking_block(
    page: Page, upstream: Upstream
) -> None:
    thinking_stream = {"chunks": shapes.vllm_reasoning(STEPS[:2], ANSWER)}
    upstream.script(thinking_stream, thinking_stream, {"tokens": ["Plain."]})
    ask(page, "shown thoughts", assistant="up")
    wait_for_end(page)
    expect(thinking(page)).to_be_visible()
    ask(page, "hidden thoughts", assistant="quiet")
    wait_for_end(page)
    expect(page.locator(".msg.assistant .md").last).to_have_text("The answer is 42.")
    expect(thinking(page)).to_be_hidden()
    ask(page, "no thoughts", assistant="up")
    wait_for_end(page)
    expect(page.locator(".msg.assistant .md").last).to_have_text("Plain.")
    expect(thinking(page)).to_be_hidden()
    page.reload()
    expect(page.locator(".msg.assistant .md").last).to_have_text("Plain.")
    expect(page.locator(".msg.assistant .thinking:visible")).to_have_count(1)
