"""Edit and resend on the page: a question edited in place branches the conversation, pagers
move between the branches, and what the model is sent follows the branch on screen.

In a real Chromium against a real server. The simulated ``echo`` answers with the question, or
with the whole history it received (``echo_history``): what the model saw is read from the
answer itself.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from conftest import RunningServer
from web.chat_page import (
    ask,
    conversation_id,
    open_context,
    shown,
    simulate,
    wait_for_end,
    watch,
)

pytestmark = pytest.mark.integration


def turn(page: Page, index: int) -> Locator:
    return page.locator(".turn").nth(index)


def questions(page: Page) -> list[str]:
    texts: list[str] = page.locator(".msg.user .bubble").all_inner_texts()
    return texts


def edit(page: Page, index: int, text: str) -> None:
    """Edit the question of turn ``index`` in place and send it (Enter)."""
    question = turn(page, index)
    question.hover()
    question.get_by_role("button", name="Edit message").click()
    box = question.get_by_role("textbox", name="Edit your message")
    expect(box).to_be_focused()
    box.fill(text)
    box.press("Enter")


def seen_by_model(page: Page) -> list[str]:
    """What the model received, from the last answer of an ``echo_history`` ask."""
    return [message["content"] for message in json.loads(shown(page))]


def test_edit_branches_the_conversation_and_the_pager_switches_branches(
    page: Page, api: httpx.Client, screenshots: Path
) -> None:
    ask(page, "one")
    wait_for_end(page)
    ask(page, "two")
    wait_for_end(page)

    question = turn(page, 1)
    question.hover()
    question.get_by_role("button", name="Edit message").click()
    box = question.get_by_role("textbox", name="Edit your message")
    expect(box).to_have_value("two")
    box.fill("two, edited")
    page.screenshot(path=screenshots / "edit-in-place.png")
    box.press("Enter")
    wait_for_end(page)
    assert questions(page) == ["one", "two, edited"]
    assert shown(page) == "two, edited"
    expect(turn(page, 1).locator(".version-pager .count")).to_have_text("2 / 2")

    # the model is sent the branch on screen: the edited question, not the one it replaced
    simulate(page, echo_history=True, tokens_per_second=2000)
    ask(page, "three")
    wait_for_end(page)
    assert seen_by_model(page) == ["one", "one", "two, edited", "two, edited", "three"]
    page.screenshot(path=screenshots / "branch-edited.png")

    # back to the first version: its own continuation, without what followed the edit
    turn(page, 1).get_by_role("button", name="Previous version").click()
    expect(turn(page, 1).locator(".bubble")).to_have_text("two")
    expect(page.locator(".turn")).to_have_count(2)
    expect(turn(page, 1).locator(".version-pager .count")).to_have_text("1 / 2")
    assert shown(page) == "two"
    page.screenshot(path=screenshots / "branch-switched.png")

    # a question asked here goes on this branch
    ask(page, "four")
    wait_for_end(page)
    assert seen_by_model(page) == ["one", "one", "two", "two", "four"]

    # and forward again: the edited branch, whole
    turn(page, 1).get_by_role("button", name="Next version").click()
    expect(turn(page, 1).locator(".bubble")).to_have_text("two, edited")
    expect(page.locator(".turn")).to_have_count(3)
    assert questions(page) == ["one", "two, edited", "three"]

    # a reload opens the branch written last (the one with "four")
    page.reload()
    expect(page.locator(".turn")).to_have_count(3)
    assert questions(page) == ["one", "two", "four"]
    expect(turn(page, 1).locator(".version-pager .count")).to_have_text("1 / 2")

    stored = api.get(f"/v1/conversations/{conversation_id(page)}").json()["messages"]
    assert sorted(m["text"] for m in stored if m["role"] == "user") == sorted(
        ["one", "two", "two, edited", "three", "four"]
    )


def test_an_answer_pager_moves_to_that_answers_branch(page: Page) -> None:
    ask(page, "one")
    wait_for_end(page)
    page.get_by_role("button", name="Regenerate", exact=True).click()
    wait_for_end(page)
    ask(page, "two")
    wait_for_end(page)
    first = turn(page, 0)
    expect(first.locator(".pager .count")).to_have_text("2 / 2")
    first.get_by_role("button", name="Previous answer").click()
    # the first answer's branch has nothing after it
    expect(page.locator(".turn")).to_have_count(1)
    expect(first.locator(".pager .count")).to_have_text("1 / 2")
    turn(page, 0).get_by_role("button", name="Next answer").click()
    expect(page.locator(".turn")).to_have_count(2)
    assert questions(page) == ["one", "two"]


def test_escape_cancels_an_edit_and_nothing_is_sent(page: Page, api: httpx.Client) -> None:
    ask(page, "keep me")
    wait_for_end(page)
    question = turn(page, 0)
    question.hover()
    question.get_by_role("button", name="Edit message").click()
    box = question.get_by_role("textbox", name="Edit your message")
    box.fill("not this")
    box.press("Escape")
    expect(box).to_be_hidden()
    expect(question.locator(".bubble")).to_have_text("keep me")
    expect(question.get_by_role("button", name="Edit message")).to_be_focused()
    stored = api.get(f"/v1/conversations/{conversation_id(page)}").json()["messages"]
    assert [m["text"] for m in stored] == ["keep me", "keep me"]


def test_copy_on_your_own_message(
    browser: Browser, server: RunningServer, screenshots: Path
) -> None:
    context = open_context(browser, permissions=["clipboard-read", "clipboard-write"])
    try:
        page = context.new_page()
        errors = watch(page)
        page.goto(server.url + "/")
        ask(page, "copy **my** words\nline two")
        wait_for_end(page)
        question = turn(page, 0)
        question.hover()
        question.get_by_role("button", name="Copy message").click()
        page.wait_for_function(
            "async (want) => (await navigator.clipboard.readText()) === want",
            arg="copy **my** words\nline two",
        )
        question.hover()
        page.screenshot(path=screenshots / "question-actions.png")
        assert not errors, errors
    finally:
        context.close()


def test_an_edit_refused_puts_the_branch_and_the_edit_back(page: Page, api: httpx.Client) -> None:
    ask(page, "first")
    wait_for_end(page)
    ask(page, "second")
    wait_for_end(page)
    refusal = {"error": {"code": "store_unavailable", "message": "the store is away"}}
    page.route("**/edit", lambda route: route.fulfill(status=503, json=refusal))
    edit(page, 0, "first, edited")
    expect(page.get_by_role("alert")).to_contain_text("the store is away")
    expect(page.locator(".turn")).to_have_count(2)
    box = turn(page, 0).get_by_role("textbox", name="Edit your message")
    expect(box).to_have_value("first, edited")  # the edit is still there, to send again
    expect(turn(page, 1).locator(".bubble")).to_have_text("second")
    stored = api.get(f"/v1/conversations/{conversation_id(page)}").json()["messages"]
    assert [m["text"] for m in stored] == ["first", "first", "second", "second"]
