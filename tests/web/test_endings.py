"""How the page tells each way an answer can end, in a real Chromium against real servers.

Each ending is produced for real: the simulated model's per-request knobs fail, stall or cut an
answer; an upstream on a closed port is an outage; a replica killed with SIGKILL mid-answer is
a server that stopped one (another replica on the same Redis ends it ``interrupted``). The
reader is told in a few plain words, never the server's diagnostics, and is offered only what
makes sense: no Copy or rating of nothing, no rating of a failure, Regenerate after one.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Locator, Page, Route, expect

from conftest import ServerFactory
from helpers import free_port
from replicas import Replicas
from upstream.control import Upstream
from upstream.fixtures import Gateway
from web.chat_page import (
    answers,
    ask,
    assistant_messages,
    conversation_id,
    open_context,
    simulate,
    wait_for_end,
    wait_for_length,
    watch,
    words,
)

pytestmark = pytest.mark.integration

RETRY = "Regenerate to try again."

OpenPage = Callable[[str], Page]


@pytest.fixture
def open_page(browser: Browser) -> Iterator[OpenPage]:
    """Open the page of a server the test started; each page must end with no script error."""
    context = open_context(browser)
    errors: list[list[str]] = []

    def open_at(url: str) -> Page:
        page = context.new_page()
        errors.append(watch(page))
        page.goto(url + "/")
        expect(page.get_by_label("Assistant")).not_to_have_value("")
        return page

    try:
        yield open_at
    finally:
        context.close()
    assert not any(errors), errors


def note(page: Page) -> Locator:
    return page.locator(".msg.assistant .answer-note").last


def button(page: Page, name: str) -> Locator:
    return page.locator(".msg.assistant").last.get_by_role("button", name=name, exact=True)


def offers(page: Page, *, copy: bool, rating: bool) -> None:
    """The last answer's actions: Regenerate always (it ended), Copy and the thumbs as told."""
    expect(button(page, "Regenerate")).to_be_visible()
    for name, wanted in (("Copy", copy), ("Good answer", rating), ("Bad answer", rating)):
        if wanted:
            expect(button(page, name)).to_be_visible()
        else:
            expect(button(page, name)).to_be_hidden()


# -- failures ------------------------------------------------------------------------------


def test_a_failure_before_any_text_offers_neither_copy_nor_rating(
    page: Page, api: httpx.Client, screenshots: Path
) -> None:
    simulate(page, fail_after_tokens=0)
    ask(page, "this answer fails before its first piece")
    wait_for_end(page)
    expect(note(page)).to_have_text(f"The model failed while answering. {RETRY}")
    assert answers(page).last.inner_text() == ""
    offers(page, copy=False, rating=False)
    page.screenshot(path=screenshots / "failed-before-text.png")
    [stored] = assistant_messages(api, conversation_id(page))
    assert (stored["text"], stored["finish_reason"]) == ("", "error")
    page.reload()  # from the history, which keeps no error code: the same offer
    expect(note(page)).to_have_text(f"The answer failed. {RETRY}")
    offers(page, copy=False, rating=False)


def test_a_failure_after_some_text_keeps_copy_but_offers_no_rating(page: Page) -> None:
    simulate(page, fail_after_tokens=3)
    ask(page, "this answer breaks after three pieces")
    wait_for_end(page)
    expect(note(page)).to_have_text(f"The model failed while answering. {RETRY}")
    assert answers(page).last.inner_text() == "this answer"
    offers(page, copy=True, rating=False)


def test_an_unreachable_model_is_said_in_plain_words(
    make_server: ServerFactory, open_page: OpenPage, screenshots: Path
) -> None:
    closed = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there: refused
    server = make_server(
        upstreams=[{"name": "east-1", "base_url": closed, "headers_timeout": 1}],
        assistants=[{"name": "up", "model": "test-model"}],
        retry={"deadline": 1, "backoff_initial": 0.05, "backoff_max": 0.2},
    )
    page = open_page(server.url)
    ask(page, "is anyone there?", assistant="up")
    wait_for_end(page)
    # the server's message names the upstream, the attempts and the exception: for its log
    expect(note(page)).to_have_text(f"The model is not reachable right now. {RETRY}")
    offers(page, copy=False, rating=False)
    page.screenshot(path=screenshots / "model-unreachable.png")


def test_a_model_too_slow_is_said_in_plain_words(
    make_server: ServerFactory, open_page: OpenPage
) -> None:
    page = open_page(make_server(idle_timeout=0.5).url)
    simulate(page, stall_after_tokens=3)
    ask(page, "a model that goes quiet")
    wait_for_end(page)
    expect(note(page)).to_have_text(f"The model took too long to answer. {RETRY}")
    assert answers(page).last.inner_text() == "a model that"
    offers(page, copy=True, rating=False)


def test_stopped_and_length_are_told_and_can_be_rated(page: Page) -> None:
    simulate(page, stall_after_tokens=0)
    ask(page, "stopped before its first piece")
    expect(page.locator(".msg.assistant .typing")).to_be_visible()
    page.get_by_role("button", name="Stop", exact=True).click()
    wait_for_end(page)
    expect(note(page)).to_have_text("Stopped before any text was written.")
    offers(page, copy=False, rating=False)
    page.unroute("**/v1/chat")

    def at_most_two_pieces(route: Route) -> None:
        body = json.loads(route.request.post_data or "{}")
        route.continue_(post_data=json.dumps({**body, "options": {"max_tokens": 2}}))

    page.route("**/v1/chat", at_most_two_pieces)
    ask(page, "cut at two pieces")
    wait_for_end(page)
    expect(note(page)).to_have_text("Cut short: the answer reached its length limit.")
    assert answers(page).last.inner_text() == "cut at t"
    offers(page, copy=True, rating=True)


def test_how_an_upstream_ended_is_said_in_plain_words(
    upstream: Upstream, gateway: Gateway, open_page: OpenPage
) -> None:
    upstream.script(
        {"finish_reason": None, "done": False},  # closed with neither a reason nor [DONE]
        {"finish_reason": "content_filter"},
    )
    page = open_page(gateway(upstream).url)
    ask(page, "an answer that breaks off", assistant="up")
    wait_for_end(page)
    expect(note(page)).to_have_text(f"The model's answer broke off before its end. {RETRY}")
    offers(page, copy=True, rating=False)
    ask(page, "an answer the filter stops", assistant="up")
    wait_for_end(page)
    expect(note(page)).to_have_text("Stopped by the model's content filter.")
    offers(page, copy=True, rating=True)


# -- the server stopped it ---------------------------------------------------------------------

LEASE = 1.0  # a dead replica's answers end this long after its last renewal


def test_an_answer_cut_by_a_dead_replica_is_shown_as_stopped_by_the_server(
    replicas: Replicas,
    redis_url: str,
    make_server: ServerFactory,
    open_page: OpenPage,
    screenshots: Path,
) -> None:
    """A generates, B serves the page and its stream (one Redis, one database); A dies."""
    shared = {"broker": redis_url, "lease_timeout": LEASE}
    # Playwright's own event loop runs in this thread: the replica is awaited in another one
    with ThreadPoolExecutor(1) as starter:
        generating = starter.submit(asyncio.run, replicas.start(**shared)).result()
    serving = make_server(data_dir=replicas.data_dir, **shared)
    page = open_page(serving.url)

    def ask_on_the_generating_replica(route: Route) -> None:
        body = json.loads(route.request.post_data or "{}")
        body["options"] = {"simulate": {"tokens_per_second": 20}}
        reply = route.fetch(url=generating.url + "/v1/chat", post_data=json.dumps(body))
        route.fulfill(response=reply)

    page.route("**/v1/chat", ask_on_the_generating_replica)
    question = words(100)  # 500 characters: 25 s at 20 pieces of 4 a second
    ask(page, question)
    wait_for_length(page, 60)
    generating.kill()
    wait_for_end(page)
    cut = f"The server stopped this answer. {RETRY}"
    expect(note(page)).to_have_text(cut)
    expect(note(page)).to_have_class("answer-note cut")
    text = answers(page).last.inner_text()
    assert 50 <= len(text) < len(question) and question.startswith(text)
    offers(page, copy=True, rating=False)
    page.screenshot(path=screenshots / "stopped-by-the-server.png")
    with httpx.Client(base_url=serving.url) as api:
        [stored] = assistant_messages(api, conversation_id(page))
    assert stored["status"] == "interrupted"

    page.reload()  # the history says the same
    expect(note(page)).to_have_text(cut)
    offers(page, copy=True, rating=False)

    page.unroute("**/v1/chat")
    button(page, "Regenerate").click()
    expect(page.locator(".pager .count")).to_have_text("2 / 2")
    wait_for_end(page)
    assert answers(page).last.inner_text() == question
    expect(note(page)).to_be_hidden()
