"""The chat page in a real headless Chromium (Debian's, driven by Playwright) against a real server.

Every wait is on a condition (Playwright's ``expect`` and ``wait_for_function``), never a fixed
sleep. The simulated model is the oracle: ``echo`` answers with the question verbatim, so the
text a page shows at the end can be compared with the question exactly. Screenshots of the main
states go to ``test-output/screenshots/``.
"""

from __future__ import annotations

import json
import re
import socket
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Request, Route, expect

from conftest import RunningServer, ServerFactory
from helpers import add_user
from web.chat_page import (
    NO_PAGE_SCROLL,
    NO_SIDEWAYS_SCROLL,
    answers,
    ask,
    assistant_messages,
    conversation,
    conversation_id,
    message_box,
    open_context,
    shown,
    sign_in,
    simulate,
    uncovered,
    wait_for_end,
    wait_for_length,
    watch,
    words,
)

pytestmark = pytest.mark.integration


# -- typing, stopping, regenerating ----------------------------------------------------------


def test_the_answer_types_itself(page: Page, api: httpx.Client) -> None:
    ask(page, "What is SSE?", assistant="default")
    expect(page.get_by_role("button", name="Stop", exact=True)).to_be_visible()
    expect(page.get_by_role("button", name="Send", exact=True)).to_be_hidden()
    # Sample the answer's length on every frame until it ends: it must grow step by step.
    # The first block (paragraph) keeps its node once the next one started: finished blocks
    # are not re-rendered, so nothing above the growing end flickers.
    sampled: dict[str, Any] = page.evaluate(
        """async () => {
            const lengths = [];
            let first = null;
            const deadline = performance.now() + 20000;
            const streaming = () => document.querySelector('.msg.assistant.streaming');
            while (streaming() && performance.now() < deadline) {
                const md = document.querySelector('.msg.assistant .md');
                lengths.push(md ? md.innerText.length : 0);
                const blocks = md ? md.querySelectorAll('.md-block') : [];
                if (!first && blocks.length > 1) first = blocks[0].firstElementChild;
                await new Promise((resolve) => requestAnimationFrame(resolve));
            }
            const now = document.querySelector('.msg.assistant .md .md-block');
            return { lengths, kept: first !== null && now.firstElementChild === first };
        }"""
    )
    lengths: list[int] = sampled["lengths"]
    assert sampled["kept"], "a finished paragraph was rendered again"
    growth = sorted(set(lengths))
    assert len(growth) >= 10, f"the answer did not type itself: {growth}"
    assert lengths == sorted(lengths), "the text shrank while streaming"
    assert growth[0] < growth[-1] / 4
    wait_for_end(page)
    final = shown(page)
    assert final.startswith("Server-Sent Events (SSE) let a server push")
    assert "This answer comes from typewriter's simulated model" in final
    assert len(final) > growth[-2]
    # Markdown: the canned answer has a list and inline code
    assert page.locator(".msg.assistant .md li").count() == 3
    expect(page.locator(".msg.assistant .md code").first).to_have_text("field: value")
    expect(page.get_by_role("button", name="Regenerate", exact=True)).to_be_visible()
    expect(page.get_by_role("button", name="Copy", exact=True)).to_be_visible()
    stored = assistant_messages(api, conversation_id(page))
    assert [m["finish_reason"] for m in stored] == ["stop"]


def test_while_an_answer_is_written(page: Page, screenshots: Path) -> None:
    """What a reader sees mid-answer: the answer is marked as being written and offers no
    actions yet, Stop replaces Send, and the text and the message box are in sight."""
    simulate(page, tokens_per_second=8)  # the canned answer takes about 10 s
    ask(page, "Show me the typewriter", assistant="default")
    wait_for_length(page, 150)
    answer = page.locator(".msg.assistant")
    expect(answer).to_have_attribute("aria-busy", "true")
    for name in ("Copy", "Good answer", "Bad answer", "Regenerate"):
        expect(answer.get_by_role("button", name=name, exact=True)).to_be_hidden()
    stop = page.get_by_role("button", name="Stop", exact=True)
    expect(stop).to_be_enabled()
    # one screen: the title above, the newest text in the log, the message box and Stop below
    title = page.get_by_role("heading", level=1)
    for control in (title, answer.locator(".md-block").last, message_box(page), stop):
        assert uncovered(control), f"{control} is out of sight or covered"
    assert page.evaluate(NO_PAGE_SCROLL), "the page scrolls, not just the log"
    page.screenshot(path=screenshots / "typing.png")
    stop.click()
    wait_for_end(page)
    expect(answer).to_have_attribute("aria-busy", "false")
    expect(answer.get_by_role("button", name="Copy", exact=True)).to_be_visible()


def test_stop_keeps_what_was_shown(page: Page, api: httpx.Client, screenshots: Path) -> None:
    question = words(500)  # 2,500 characters: about 12 s at the echo's pace
    ask(page, question)
    wait_for_length(page, 200)
    page.get_by_role("button", name="Stop", exact=True).click()
    wait_for_end(page)
    expect(page.locator(".msg.assistant .answer-note")).to_have_text("Stopped.")
    expect(message_box(page)).to_be_focused()
    page.screenshot(path=screenshots / "stopped.png")
    [stored] = assistant_messages(api, conversation_id(page))
    assert stored["finish_reason"] == "cancelled"
    assert stored["status"] == "done"
    text = shown(page)
    # Markdown shows a paragraph without its trailing space; nothing else differs
    assert text == stored["text"].rstrip(" ")
    assert 200 <= len(text) < len(question)
    assert question.startswith(text)


def test_regenerate(page: Page, api: httpx.Client) -> None:
    ask(page, "Say it again")
    wait_for_end(page)
    page.get_by_role("button", name="Regenerate", exact=True).click()
    expect(page.locator(".pager .count")).to_have_text("2 / 2")
    wait_for_end(page)
    expect(answers(page)).to_have_count(1)  # one answer shown per question
    assert shown(page) == "Say it again"
    stored = assistant_messages(api, conversation_id(page))
    assert len(stored) == 2
    assert stored[0]["stream_id"] != stored[1]["stream_id"]
    assert [m["text"] for m in stored] == ["Say it again", "Say it again"]
    assert [m["finish_reason"] for m in stored] == ["stop", "stop"]
    page.get_by_role("button", name="Previous answer").click()
    expect(page.locator(".pager .count")).to_have_text("1 / 2")
    # each answer is a branch of its own: the one shown can be asked again too
    expect(page.get_by_role("button", name="Regenerate", exact=True)).to_be_visible()
    expect(page.get_by_role("button", name="Previous answer")).to_be_disabled()
    page.get_by_role("button", name="Next answer").click()
    expect(page.locator(".pager .count")).to_have_text("2 / 2")
    expect(page.get_by_role("button", name="Next answer")).to_be_disabled()


def test_reload_mid_answer_shows_it_once(
    page: Page, context: BrowserContext, api: httpx.Client
) -> None:
    question = words(160)  # 800 characters: about 4 s at the echo's pace
    ask(page, question)
    wait_for_length(page, 150)
    cid = conversation_id(page)
    [before] = assistant_messages(api, cid)
    assert before["status"] == "streaming"
    page.reload()
    # a second tab on the same conversation follows the same answer
    second = context.new_page()
    second_errors = watch(second)
    second.goto(page.url)
    expect(page.locator(".msg.assistant.streaming")).to_have_count(1)
    wait_for_end(page)
    wait_for_end(second)
    assert shown(page) == question
    assert shown(second) == question
    [after] = assistant_messages(api, cid)
    assert after["id"] == before["id"]
    assert after["stream_id"] == before["stream_id"]  # the same stream: never restarted
    assert after["finish_reason"] == "stop"
    assert after["text"] == question
    assert not second_errors, second_errors
    # once ended, a reload shows the stored answer
    page.reload()
    expect(answers(page)).to_have_count(1)
    assert shown(page) == question


def test_hostile_text_never_runs(page: Page, screenshots: Path) -> None:
    question = (
        'Hostile: <img src=x onerror="window.__pwned=1"> and '
        "<script>window.__pwned=1</script> and [a link](javascript:window.__pwned=1) "
        "and [a real one](https://example.com/).\n\n"
        '<div onmouseover="window.__pwned=1">raw block</div>\n\n'
        "- a list item with `inline code`\n- and **bold**\n\n"
        "```js\nalert('hi');\n```\n"
    )
    ask(page, question)
    wait_for_end(page)
    answer = answers(page).last
    # the question is text
    bubble = page.locator(".msg.user .bubble").last
    assert bubble.text_content() == question
    assert bubble.locator("img, script, a").count() == 0
    # the answer renders its Markdown, and shows the HTML in it as text
    expect(answer).to_contain_text('<img src=x onerror="window.__pwned=1">')
    expect(answer).to_contain_text("<script>window.__pwned=1</script>")
    expect(answer).to_contain_text('<div onmouseover="window.__pwned=1">raw block</div>')
    assert answer.locator("img, script, [onerror], [onmouseover], iframe").count() == 0
    assert answer.locator('[href^="javascript:" i]').count() == 0
    expect(answer.locator("li")).to_have_count(2)
    expect(answer.locator("li code")).to_have_text("inline code")
    expect(answer.locator("strong")).to_have_text("bold")
    assert answer.locator("pre code").text_content() == "alert('hi');\n"
    expect(answer.get_by_role("button", name="Copy code")).to_be_visible()
    real = answer.get_by_role("link", name="a real one")
    expect(real).to_have_attribute("target", "_blank")
    expect(real).to_have_attribute("rel", "noopener noreferrer")
    answer.get_by_text("a link", exact=True).click()
    answer.get_by_text("raw block", exact=False).hover()
    page.screenshot(path=screenshots / "hostile.png")
    assert page.evaluate("window.__pwned") is None
    assert page.url.startswith("http")


def test_keyboard_only(page: Page) -> None:
    for _ in range(30):
        if page.evaluate("document.activeElement && document.activeElement.id") == "message":
            break
        page.keyboard.press("Tab")
    expect(message_box(page)).to_be_focused()
    # the assistant picker follows the message box and its Send button
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    expect(page.get_by_label("Assistant")).to_be_focused()
    page.keyboard.press("e")  # type-ahead picks "echo"
    expect(page.get_by_label("Assistant")).to_have_value("echo")
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Shift+Tab")
    expect(message_box(page)).to_be_focused()
    page.keyboard.type("first line")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("second line")
    expect(message_box(page)).to_have_value("first line\nsecond line")
    expect(page.locator(".turn")).to_have_count(0)  # Shift+Enter did not send
    page.keyboard.press("Enter")
    expect(page.locator(".msg.user .bubble")).to_have_count(1)
    assert page.locator(".msg.user .bubble").text_content() == "first line\nsecond line"
    expect(message_box(page)).to_have_value("")
    expect(message_box(page)).to_be_focused()
    wait_for_end(page)
    assert shown(page) == "first line\nsecond line"
    # the answer's actions are just before the message box: Regenerate with the keyboard
    page.keyboard.press("Shift+Tab")
    expect(page.get_by_role("button", name="Regenerate", exact=True)).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator(".pager .count")).to_have_text("2 / 2")
    expect(message_box(page)).to_be_focused()
    wait_for_end(page)
    assert shown(page) == "first line\nsecond line"


# -- conversations --------------------------------------------------------------------------


def test_conversations(page: Page, api: httpx.Client, screenshots: Path) -> None:
    ask(page, "first conversation")
    wait_for_end(page)
    first = conversation_id(page)
    page.get_by_role("button", name="New chat").click()
    expect(page).to_have_url(re.compile(r"/$"))
    expect(page.locator(".turn")).to_have_count(0)
    expect(message_box(page)).to_be_focused()
    ask(page, "second conversation")
    wait_for_end(page)
    second = conversation_id(page)
    assert second != first
    links = page.get_by_role("navigation", name="Conversation list").get_by_role("link")
    expect(links).to_have_text(["second conversation", "first conversation"])  # newest first
    expect(links.first).to_have_attribute("aria-current", "page")

    # switch: the first conversation's messages come back
    links.nth(1).click()
    expect(page).to_have_url(re.compile(f"c={first}"))
    expect(page.locator(".msg.user .bubble")).to_have_text(["first conversation"])
    expect(answers(page)).to_have_text(["first conversation"])
    expect(page.get_by_role("heading", level=1)).to_have_text("first conversation")

    # back goes to the second one
    page.go_back()
    expect(page.locator(".msg.user .bubble")).to_have_text(["second conversation"])
    page.go_forward()
    expect(page.locator(".msg.user .bubble")).to_have_text(["first conversation"])

    # rename
    page.get_by_role("button", name="Rename conversation").click()
    title = page.get_by_role("textbox", name="Conversation title")
    expect(title).to_be_focused()
    title.fill("Renamed <b>chat</b>")
    title.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_have_text("Renamed <b>chat</b>")
    expect(links).to_have_text(["Renamed <b>chat</b>", "second conversation"])
    assert conversation(api, first)["title"] == "Renamed <b>chat</b>"

    # a reload of the URL restores the open conversation
    page.reload()
    expect(page.get_by_role("heading", level=1)).to_have_text("Renamed <b>chat</b>")
    expect(page.locator(".msg.user .bubble")).to_have_text(["first conversation"])
    expect(page.get_by_label("Assistant")).to_have_value("echo")
    page.screenshot(path=screenshots / "conversations.png")

    # clear history: the conversation stays, its messages go
    page.get_by_role("button", name="Clear history").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Clear history").click()
    expect(page.locator(".turn")).to_have_count(0)
    assert conversation(api, first)["messages"] == []

    # delete
    page.get_by_role("button", name="Delete conversation").click()
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    assert api.get(f"/v1/conversations/{first}").status_code == 200
    page.get_by_role("button", name="Delete conversation").click()
    expect(dialog.get_by_role("button", name="Cancel")).to_be_focused()
    page.screenshot(path=screenshots / "delete-dialog.png")
    dialog.get_by_role("button", name="Delete").click()
    expect(links).to_have_text(["second conversation"])
    expect(page).to_have_url(re.compile(r"/$"))
    assert api.get(f"/v1/conversations/{first}").status_code == 404

    # a bookmark of a deleted conversation says so
    page.goto(f"{page.url}?c={first}")
    expect(page.get_by_role("alert")).to_contain_text("does not exist")


def test_load_more_conversations(page: Page, api: httpx.Client) -> None:
    for n in range(23):
        created = api.post("/v1/conversations", json={"title": f"chat {n:02d}"})
        assert created.status_code == 201
    page.reload()
    links = page.get_by_role("navigation", name="Conversation list").get_by_role("link")
    expect(links).to_have_count(20)
    expect(links.first).to_have_text("chat 22")
    page.get_by_role("button", name="Load more").click()
    expect(links).to_have_count(23)
    expect(links.last).to_have_text("chat 00")
    expect(page.get_by_role("button", name="Load more")).to_be_hidden()


def test_opening_another_conversation_leaves_the_old_view(page: Page, api: httpx.Client) -> None:
    slow = api.post("/v1/conversations", json={"title": "slow"}).json()["id"]
    quick = api.post("/v1/conversations", json={"title": "quick"}).json()["id"]
    page.reload()
    held: list[Route] = []
    page.route(f"**/v1/conversations/{slow}/branch", lambda route: held.append(route))  # unanswered
    links = page.get_by_role("navigation", name="Conversation list").get_by_role("link")
    with page.expect_request(f"**/v1/conversations/{slow}/branch"):
        links.get_by_text("slow").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("…")
    with page.expect_event("requestfailed") as failed:
        links.get_by_text("quick").click()
    assert failed.value.url.endswith(f"/v1/conversations/{slow}/branch")
    assert failed.value.failure == "net::ERR_ABORTED"
    expect(page).to_have_url(re.compile(f"c={quick}"))
    expect(page.get_by_role("heading", level=1)).to_have_text("quick")
    expect(links.get_by_text("quick")).to_have_attribute("aria-current", "page")
    assert len(held) == 1
    # a rename under way belongs to its view too: opening another one closes it
    page.get_by_role("button", name="Rename conversation").click()
    title = page.get_by_role("textbox", name="Conversation title")
    expect(title).to_be_focused()
    links.get_by_text("slow").click()
    expect(title).to_be_hidden()
    expect(page.get_by_role("heading", level=1)).to_have_text("…")
    expect(page.get_by_role("button", name="Rename conversation")).to_be_visible()


# -- copy, feedback, errors -------------------------------------------------------------------


def test_copy_and_feedback(
    browser: Browser, server: RunningServer, api: httpx.Client, screenshots: Path
) -> None:
    context = open_context(browser, permissions=["clipboard-read", "clipboard-write"])
    try:
        page = context.new_page()
        errors = watch(page)
        page.goto(server.url + "/")
        ask(page, "copy **me**\n\n```\ncode line\n```")
        wait_for_end(page)
        page.get_by_role("button", name="Copy", exact=True).click()
        page.wait_for_function(
            "async (want) => (await navigator.clipboard.readText()) === want",
            arg="copy **me**\n\n```\ncode line\n```",
        )
        page.get_by_role("button", name="Copy code").click()
        page.wait_for_function(
            "async () => (await navigator.clipboard.readText()) === 'code line\\n'"
        )
        page.get_by_role("button", name="Good answer").click()
        expect(page.get_by_role("button", name="Good answer")).to_have_attribute(
            "aria-pressed", "true"
        )
        comment = page.get_by_role("textbox", name="Comment (optional)")
        expect(comment).to_be_focused()
        comment.fill("clear and short")
        page.screenshot(path=screenshots / "feedback.png")
        page.get_by_role("button", name="Send feedback").click()
        expect(comment).to_be_hidden()
        [stored] = assistant_messages(api, conversation_id(page))
        assert stored["feedback"]["rating"] == 1
        assert stored["feedback"]["comment"] == "clear and short"
        page.reload()
        expect(page.get_by_role("button", name="Good answer")).to_have_attribute(
            "aria-pressed", "true"
        )
        assert not errors, errors
    finally:
        context.close()


def test_model_error_is_shown(page: Page, screenshots: Path) -> None:
    simulate(page, fail_after_tokens=3)
    ask(page, "this answer breaks after three pieces")
    wait_for_end(page)
    note = page.locator(".msg.assistant .answer-note")
    expect(note).to_have_text("The model failed while answering. Regenerate to try again.")
    page.screenshot(path=screenshots / "model-error.png")
    assert shown(page) == "this answer breaks after three pieces"[:12].rstrip()
    page.unroute("**/v1/chat")
    page.get_by_role("button", name="Regenerate", exact=True).click()
    wait_for_end(page)
    assert shown(page) == "this answer breaks after three pieces"
    expect(page.locator(".msg.assistant .answer-note")).to_be_hidden()


def test_too_many_requests_and_network_loss(page: Page, screenshots: Path) -> None:
    refusals = 0

    def refused(route: Route) -> None:
        nonlocal refusals
        refusals += 1
        route.fulfill(
            status=429,
            headers={"Retry-After": "2", "Content-Type": "application/json"},
            body=json.dumps({"error": {"code": "rate_limited", "message": "slow down"}}),
        )

    page.route("**/v1/chat", refused)
    ask(page, "patience")
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("Too many requests")
    expect(alert).to_contain_text("Wait 2 s")
    expect(message_box(page)).to_have_value("patience")  # nothing is lost
    expect(page.locator(".turn")).to_have_count(0)
    page.screenshot(path=screenshots / "rate-limited.png")
    page.unroute("**/v1/chat")

    # the network is gone: said so, with a way to retry
    page.route("**/v1/chat", lambda route: route.abort("internetdisconnected"))
    alert.get_by_role("button", name=re.compile("^Retry")).click()
    expect(alert).to_contain_text("cannot be reached")
    page.unroute("**/v1/chat")
    alert.get_by_role("button", name="Retry").click()
    expect(alert).to_be_hidden()
    wait_for_end(page)
    assert shown(page) == "patience"
    expect(message_box(page)).to_have_value("")
    assert refusals == 1


# -- following the reader, and a network blip ---------------------------------------------------


AT_BOTTOM = """() => { const log = document.querySelector('.log');
    return log.scrollHeight - log.scrollTop - log.clientHeight <= 2; }"""


def answer_length(page: Page) -> int:
    length: int = page.evaluate(
        "() => { const all = document.querySelectorAll('.msg.assistant .md');"
        " return all.length ? all[all.length - 1].innerText.length : 0; }"
    )
    return length


def test_auto_scroll_stops_when_the_reader_scrolls_up(
    browser: Browser, server: RunningServer
) -> None:
    context = open_context(browser, viewport={"width": 800, "height": 500})
    try:
        page = context.new_page()
        errors = watch(page)
        page.goto(server.url + "/")
        ask(page, words(500))
        log = page.locator(".log")
        page.wait_for_function(
            "() => { const log = document.querySelector('.log');"
            " return log.scrollHeight > log.clientHeight + 300; }"
        )
        wait_for_length(page, answer_length(page) + 40)
        assert page.evaluate(AT_BOTTOM), "the log does not follow the answer"
        jump = page.get_by_role("button", name="Jump to latest")
        expect(jump).to_be_hidden()

        log.hover()
        page.mouse.wheel(0, -300)
        expect(jump).to_be_visible()
        page.wait_for_function(f"() => !({AT_BOTTOM})()")
        top = log.evaluate("log => log.scrollTop")
        wait_for_length(page, answer_length(page) + 60)
        assert log.evaluate("log => log.scrollTop") == top, "the reader was pulled down"
        assert not page.evaluate(AT_BOTTOM)

        jump.click()
        expect(jump).to_be_hidden()
        wait_for_length(page, answer_length(page) + 60)
        assert page.evaluate(AT_BOTTOM), "following did not resume"
        page.get_by_role("button", name="Stop", exact=True).click()
        wait_for_end(page)
        assert not errors, errors
    finally:
        context.close()


class Blip:
    """A loopback TCP proxy in front of the server whose connections a test can cut."""

    def __init__(self, target: str) -> None:
        self.target = urlparse(target)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.sockets: set[socket.socket] = set()
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection((self.target.hostname, self.target.port))
            with self.lock:
                self.sockets |= {client, upstream}
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            self._drop(source)
            self._drop(sink)

    def _drop(self, sock: socket.socket) -> None:
        with self.lock:
            self.sockets.discard(sock)
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()

    def cut(self) -> None:
        """Every open connection ends now, as when a network goes away for a moment."""
        with self.lock:
            open_now = list(self.sockets)
        for sock in open_now:
            self._drop(sock)

    def close(self) -> None:
        self.listener.close()
        self.cut()


def test_a_network_blip_mid_answer_resumes_exactly(
    browser: Browser, make_server: ServerFactory, screenshots: Path
) -> None:
    server = make_server(retry_ms=1000)
    blip = Blip(server.url)
    context = open_context(browser)
    try:
        page = context.new_page()
        errors = watch(page)
        requests: list[Request] = []
        page.on("request", lambda request: requests.append(request))
        page.goto(blip.url + "/")
        question = words(140)  # 700 characters: about 3.5 s
        ask(page, question)
        wait_for_length(page, 200)
        blip.cut()
        alert = page.get_by_role("alert")
        expect(alert).to_contain_text("Connection lost")
        page.screenshot(path=screenshots / "reconnecting.png")
        expect(alert).to_be_hidden()
        wait_for_end(page)
        assert shown(page) == question  # no gap, no duplicate
        followed = [r.all_headers().get("last-event-id") for r in requests if "/events" in r.url]
        assert len(followed) == 2, followed
        assert followed[0] is None and followed[1] is not None and int(followed[1]) > 10
        assert not errors, errors
    finally:
        context.close()
        blip.close()


# -- layout and themes ------------------------------------------------------------------------


def background(page: Page) -> str:
    color: str = page.evaluate("getComputedStyle(document.body).backgroundColor")
    return color


def test_phone_layout_and_dark_theme(
    browser: Browser, server: RunningServer, screenshots: Path
) -> None:
    light = open_context(browser, viewport={"width": 390, "height": 844}, color_scheme="light")
    dark = open_context(browser, viewport={"width": 390, "height": 844}, color_scheme="dark")
    try:
        phone = light.new_page()
        errors = watch(phone)
        phone.goto(server.url + "/")
        ask(phone, "A phone-sized question with a long-unbreakable-" + "x" * 80 + " word")
        wait_for_end(phone)
        assert phone.evaluate(NO_SIDEWAYS_SCROLL)
        assert phone.evaluate("document.querySelector('.log').scrollWidth") <= 390
        # the title and the message box on one screen
        assert phone.evaluate(NO_PAGE_SCROLL), "the page scrolls, not just the log"
        send = phone.get_by_role("button", name="Send", exact=True)
        for control in (phone.get_by_role("heading", level=1), message_box(phone), send):
            assert uncovered(control), f"{control} is out of sight or covered"
        expect(phone.get_by_role("button", name="New chat")).to_be_hidden()
        toggle = phone.get_by_role("button", name="Conversations", exact=True)
        expect(toggle).to_have_attribute("aria-expanded", "false")
        phone.screenshot(path=screenshots / "phone.png")
        toggle.click()
        expect(phone.get_by_role("button", name="New chat")).to_be_visible()
        expect(toggle).to_have_attribute("aria-expanded", "true")
        phone.wait_for_function(
            "() => document.getElementById('sidebar').getBoundingClientRect().x === 0"
        )
        phone.screenshot(path=screenshots / "phone-sidebar.png")
        phone.keyboard.press("Escape")
        expect(phone.get_by_role("button", name="New chat")).to_be_hidden()
        assert phone.evaluate(NO_SIDEWAYS_SCROLL)

        night = dark.new_page()
        night_errors = watch(night)
        night.goto(phone.url)
        expect(night.locator(".msg.user .bubble")).to_have_count(1)
        night.set_viewport_size({"width": 1280, "height": 800})
        ask(night, "And in the dark?\n\n- a list\n- with `code`\n\n```sh\nmake run\n```\n")
        wait_for_end(night)
        assert background(phone) != background(night)
        assert background(night) == "rgb(22, 23, 26)"
        # the dark theme's own colours, not the light ones: light text, a dark code block
        answer = answers(night).last
        assert answer.evaluate("e => getComputedStyle(e).color") == "rgb(230, 230, 233)"
        code = answer.locator(".code-block")
        assert code.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(15, 16, 18)"
        night.screenshot(path=screenshots / "dark.png")
        assert not errors, errors
        assert not night_errors, night_errors
    finally:
        light.close()
        dark.close()


# -- with API keys ----------------------------------------------------------------------------


def test_with_api_keys_the_page_asks_once_and_follows_by_ticket(
    browser: Browser, make_server: ServerFactory, tmp_path: Path
) -> None:
    key = add_user(tmp_path, "reader")
    server = make_server(data_dir=tmp_path)
    context = open_context(browser)
    try:
        page = context.new_page()
        errors = watch(page)
        page.goto(server.url + "/")
        sign_in(page, key)
        expect(page.get_by_label("Assistant")).to_have_value("default")
        question = words(160)  # about 4 s at the echo's pace
        ask(page, question)
        wait_for_length(page, 150)
        page.reload()  # the streaming answer is followed again, by a ticket this time
        expect(page.locator(".msg.assistant.streaming")).to_have_count(1)
        expect(page.get_by_role("dialog", name="Sign in")).to_be_hidden()  # asked once, then kept
        wait_for_end(page)
        assert shown(page) == question
        with httpx.Client(base_url=server.url, headers={"authorization": f"Bearer {key}"}) as api:
            [answer] = assistant_messages(api, conversation_id(page))
        assert (answer["text"], answer["finish_reason"]) == (question, "stop")
        assert not errors, errors
    finally:
        context.close()
