"""Who wrote each answer, the keyboard shortcuts and signing in, in a real Chromium.

Each answer names the assistant (and the model, when it has another name) that wrote it, while
it types and after a reload. Esc stops the answer being written, as Stop does; a shortcut opens a
new chat, another goes to the message box, and ``?`` lists them in a dialog. With API keys on,
a dialog asks for the key (masked), refuses a wrong one in words, and "Sign out" forgets it and
asks again. Screenshots of the help and sign-in dialogs go to ``test-output/screenshots/``.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Dialog, Page, expect

from conftest import ServerFactory
from helpers import add_user
from upstream.control import Upstream
from web.chat_page import (
    answers,
    ask,
    assistant_messages,
    conversation_id,
    message_box,
    open_context,
    shown,
    sign_in,
    simulate,
    wait_for_end,
    wait_for_length,
    watch,
    words,
)

pytestmark = pytest.mark.integration

KEY_ITEM = "typewriter.apiKey"


# -- which assistant and model answered --------------------------------------------------------


def test_each_answer_names_the_assistant_and_model_that_wrote_it(
    browser: Browser, upstream: Upstream, make_server: ServerFactory, screenshots: Path
) -> None:
    server = make_server(
        builtin_assistants=True,
        upstreams=[{"name": "u", "base_url": upstream.base_url, "headers_timeout": 5}],
        assistants=[{"name": "up", "model": "test-model"}],
    )
    context = open_context(browser)
    try:
        page = context.new_page()
        errors = watch(page)
        page.goto(server.url + "/")
        expect(page.get_by_label("Assistant")).not_to_have_value("")
        by = page.locator(".msg.assistant .answer-by")
        simulate(page, tokens_per_second=20)  # about 1 s: the label is read while it types
        ask(page, words(10), assistant="echo")
        expect(page.locator(".msg.assistant.streaming .answer-by")).to_have_text("echo")
        wait_for_end(page)
        page.unroute("**/v1/chat")
        simulate(page, tokens_per_second=1000)  # the canned answer at once
        ask(page, "And you?", assistant="default")
        wait_for_end(page)
        ask(page, "And upstream?", assistant="up")
        wait_for_end(page)
        # the simulated assistants' model has their name: it is said once
        expected = ["echo", "default", "up · test-model"]
        expect(by).to_have_text(expected)
        with httpx.Client(base_url=server.url) as api:
            stored = assistant_messages(api, conversation_id(page))
        assert [(m["assistant"], m["model"]) for m in stored] == [
            ("echo", "echo"),
            ("default", "default"),
            ("up", "test-model"),
        ]
        page.reload()  # stored answers say it too
        expect(answers(page)).to_have_count(3)
        expect(by).to_have_text(expected)
        page.screenshot(path=screenshots / "answer-authors.png")
        assert not errors, errors
    finally:
        context.close()


# -- keyboard --------------------------------------------------------------------------------


def test_esc_stops_the_answer_being_written(page: Page, api: httpx.Client) -> None:
    simulate(page, tokens_per_second=10)
    question = words(200)
    ask(page, question)
    wait_for_length(page, 30)
    expect(message_box(page)).to_be_focused()
    page.keyboard.press("Escape")
    wait_for_end(page)
    expect(page.locator(".msg.assistant .answer-note")).to_have_text("Stopped.")
    [stored] = assistant_messages(api, conversation_id(page))
    assert (stored["status"], stored["finish_reason"]) == ("done", "cancelled")
    assert question.startswith(shown(page)) and len(shown(page)) < len(question)
    # Esc with nothing being written does nothing (and stops nothing)
    page.keyboard.press("Escape")
    expect(page.get_by_role("button", name="Send", exact=True)).to_be_visible()


def test_shortcuts_open_a_new_chat_reach_the_message_box_and_list_themselves(
    page: Page, screenshots: Path
) -> None:
    log = page.get_by_role("region", name="Chat")
    for shortcut in ("Control+Shift+O", "Alt+Shift+N"):
        ask(page, f"before {shortcut}")
        wait_for_end(page)
        expect(page).to_have_url(re.compile(r"\?c="))
        log.focus()
        page.keyboard.press(shortcut)
        expect(page).to_have_url(re.compile(r"/$"))
        expect(page.locator(".turn")).to_have_count(0)
        expect(message_box(page)).to_be_focused()

    for shortcut in ("/", "Shift+Escape"):
        log.focus()
        page.keyboard.press(shortcut)
        expect(message_box(page)).to_be_focused()
        expect(message_box(page)).to_have_value("")  # the "/" was not typed
    # in the message box "/" and "?" are what they are
    page.keyboard.type("a/b?")
    expect(message_box(page)).to_have_value("a/b?")
    help_dialog = page.get_by_role("dialog", name="Keyboard shortcuts")
    expect(help_dialog).to_be_hidden()

    log.focus()
    page.keyboard.press("?")
    expect(help_dialog).to_be_visible()
    for listed in ("Esc", "Ctrl", "Shift", "?"):
        expect(help_dialog.locator("kbd", has_text=listed).first).to_be_visible()
    expect(help_dialog.get_by_role("button", name="Close")).to_be_focused()
    page.screenshot(path=screenshots / "keyboard-shortcuts.png")
    page.keyboard.press("Escape")
    expect(help_dialog).to_be_hidden()
    expect(log).to_be_focused()  # the focus is back where it was
    message_box(page).focus()  # from where "?" is typed: Ctrl+/
    page.keyboard.press("Control+/")
    expect(help_dialog).to_be_visible()
    help_dialog.get_by_role("button", name="Close").click()
    expect(help_dialog).to_be_hidden()
    expect(message_box(page)).to_be_focused()
    expect(message_box(page)).to_have_value("a/b?")


# -- signing in ------------------------------------------------------------------------------


def test_sign_in_refuses_a_wrong_key_and_sign_out_asks_again(
    browser: Browser, make_server: ServerFactory, tmp_path: Path, screenshots: Path
) -> None:
    key = add_user(tmp_path, "reader")
    server = make_server(data_dir=tmp_path)
    context = open_context(browser)
    try:
        page = context.new_page()
        errors = watch(page)
        prompts: list[str] = []

        def no_prompt(dialog: Dialog) -> None:
            prompts.append(dialog.message)
            dialog.dismiss()

        page.on("dialog", no_prompt)
        page.goto(server.url + "/")
        dialog = page.get_by_role("dialog", name="Sign in")
        expect(dialog).to_be_visible()
        field = dialog.get_by_label("API key")
        expect(field).to_be_focused()
        expect(field).to_have_attribute("type", "password")
        expect(dialog).to_contain_text("typewriter users add NAME")

        field.fill("tw_" + "x" * 40)
        field.press("Enter")
        expect(dialog.get_by_role("alert")).to_contain_text("refused")
        expect(field).to_be_focused()
        expect(dialog).to_be_visible()  # still asking, once: no loop of prompts
        page.screenshot(path=screenshots / "sign-in-refused.png")
        assert page.evaluate(f"localStorage.getItem('{KEY_ITEM}')") is None

        dialog.get_by_role("button", name="Show").click()
        expect(field).to_have_attribute("type", "text")
        field.fill(key)
        field.press("Enter")
        expect(dialog).to_be_hidden()
        expect(page.get_by_label("Assistant")).to_have_value("default")
        ask(page, "signed in")
        wait_for_end(page)
        assert shown(page) == "signed in"

        sign_out = page.get_by_role("button", name="Sign out")
        expect(sign_out).to_be_visible()
        page.screenshot(path=screenshots / "signed-in.png")
        sign_out.click()
        expect(dialog).to_be_visible()  # to switch keys
        expect(page).to_have_url(server.url + "/")
        assert page.evaluate(f"localStorage.getItem('{KEY_ITEM}')") is None
        expect(page.locator(".turn")).to_have_count(0)
        page.screenshot(path=screenshots / "sign-in.png")
        sign_in(page, key)
        expect(page.get_by_role("link", name="signed in")).to_be_visible()  # the same user's list
        assert not prompts, prompts
        assert not errors, errors
    finally:
        context.close()
