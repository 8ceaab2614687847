"""Finding and sorting conversations on the page, in a real Chromium: the sidebar's search box
(the server searches titles and text, Chinese substrings too), the list under date headings
in the browser's time zone, plain-text titles, the open conversation scrolled into view, and
Export as Markdown (fetched with the API key).

Conversations are made through the API; their last activity (``updated_at``, which the API
has no way to set) is moved back in the server's SQLite file, as if they were older.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from conftest import RunningServer, ServerFactory
from helpers import add_user
from web.chat_page import open_context, watch

pytestmark = pytest.mark.integration

ZONE = "Asia/Shanghai"  # not the machine's: the groups follow the browser's own days
FAST = {"simulate": {"tokens_per_second": 5000}}


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def server(make_server: ServerFactory, data_dir: Path) -> RunningServer:
    return make_server(data_dir=data_dir)


@pytest.fixture
def api(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        yield client


def asked(api: httpx.Client, question: str) -> str:
    """A conversation with ``question`` and its answer, once the answer is stored."""
    started = api.post("/v1/chat", json={"message": question, "assistant": "echo", "options": FAST})
    assert started.status_code == 202, started.text
    cid: str = started.json()["conversation_id"]
    deadline = time.monotonic() + 10
    while api.get(f"/v1/conversations/{cid}").json()["messages"][-1]["status"] == "streaming":
        assert time.monotonic() < deadline, "the answer did not end"
        time.sleep(0.02)
    return cid


def titled(api: httpx.Client, title: str) -> str:
    response = api.post("/v1/conversations", json={"title": title})
    assert response.status_code == 201, response.text
    cid: str = response.json()["id"]
    return cid


def last_active(data_dir: Path, times: dict[str, float]) -> None:
    """Set the conversations' ``updated_at`` in the server's database."""
    with sqlite3.connect(data_dir / "typewriter.db") as db:
        for cid, at in times.items():
            db.execute("UPDATE conversations SET updated_at = ? WHERE id = ?", (at, cid))


def days_ago(days: int, hour: int = 12) -> float:
    """A time ``days`` calendar days before today in ZONE, at ``hour``."""
    today = dt.datetime.now(ZoneInfo(ZONE)).date()
    day = today - dt.timedelta(days=days)
    return dt.datetime.combine(day, dt.time(hour), ZoneInfo(ZONE)).timestamp()


def sidebar_links(page: Page) -> list[str]:
    links = page.locator("#conversations a")
    return [text.strip() for text in links.all_inner_texts()]


def test_search_and_date_groups(
    browser: Browser, server: RunningServer, api: httpx.Client, data_dir: Path, screenshots: Path
) -> None:
    chinese = asked(api, "请解释：什么是服务器推送事件？")
    redis = asked(api, "Tell me\nhow Redis streams keep their entries")
    table = asked(api, "Here is a **table**:\n\n| a | b |\n|---|---|\n| 1 | 2 |")
    holiday = titled(api, "Holiday plans")
    taxes = titled(api, "Tax return 2025")
    last_active(
        data_dir,
        {
            redis: days_ago(1, hour=0),  # the first minute of yesterday
            holiday: days_ago(3),
            taxes: days_ago(40),
            chinese: time.time() - 60,
            table: time.time(),
        },
    )
    context = open_context(browser, timezone_id=ZONE, viewport={"width": 1100, "height": 700})
    try:
        page = context.new_page()
        errors = watch(page)
        page.goto(server.url + "/")
        nav = page.get_by_role("navigation", name="Conversation list")
        headings = nav.get_by_role("heading")
        expect(headings).to_have_text(["Today", "Yesterday", "Previous 7 days", "Older"])
        for heading, titles in [
            ("Today", ["Here is a table:", "请解释：什么是服务器推送事件？"]),
            ("Yesterday", ["Tell me"]),
            ("Previous 7 days", ["Holiday plans"]),
            ("Older", ["Tax return 2025"]),
        ]:
            expect(nav.get_by_role("list", name=heading).get_by_role("link")).to_have_text(titles)
        page.screenshot(path=str(screenshots / "find-date-groups.png"))

        search = page.get_by_role("searchbox", name="Search conversations")
        search.fill("服务器")
        expect(nav.get_by_role("link")).to_contain_text(["请解释：什么是服务器推送事件？"])
        expect(nav.get_by_role("link")).to_have_count(1)
        page.screenshot(path=str(screenshots / "find-search-chinese.png"))
        search.fill("REDIS STREAMS")  # in the question's second line, not the title
        found = nav.get_by_role("link")
        expect(found).to_have_count(1)
        expect(found.locator(".conversation-title")).to_have_text("Tell me")
        expect(found.locator(".snippet")).to_have_text(
            "Tell me how Redis streams keep their entries"
        )
        page.screenshot(path=str(screenshots / "find-search-snippet.png"))
        search.fill("100% nowhere")
        expect(nav.get_by_role("link")).to_have_count(0)
        expect(page.get_by_text("No conversation holds “100% nowhere”.")).to_be_visible()
        page.screenshot(path=str(screenshots / "find-search-nothing.png"))
        search.press("Escape")
        expect(search).to_have_value("")
        expect(nav.get_by_role("link")).to_have_count(5)
        assert "*" not in "".join(sidebar_links(page))
        assert not errors, errors
    finally:
        context.close()


def test_the_open_conversation_is_in_view_and_exports_as_markdown(
    browser: Browser, make_server: ServerFactory, tmp_path: Path, screenshots: Path
) -> None:
    key = add_user(tmp_path, "ada")
    server = make_server(data_dir=tmp_path)
    with httpx.Client(
        base_url=server.url, headers={"authorization": f"Bearer {key}"}, timeout=10
    ) as api:
        old = asked(api, "An **old** question about 服务器")
        fillers = [titled(api, f"Filler {n:02d}") for n in range(30)]
    last_active(tmp_path, {old: days_ago(20)})
    context = open_context(browser, viewport={"width": 1000, "height": 520})
    context.add_init_script(f"localStorage.setItem('typewriter.apiKey', {key!r})")
    try:
        page = context.new_page()
        errors = watch(page)
        page.goto(f"{server.url}/?c={old}")
        current = page.locator('#conversations a[aria-current="page"]')
        expect(current).to_have_text("An old question about 服务器")  # past the first page
        expect(current).to_be_in_viewport()
        assert len(fillers) + 1 == page.locator("#conversations a").count()
        page.screenshot(path=str(screenshots / "find-open-in-view.png"))
        with page.expect_download() as downloading:
            page.get_by_role("button", name="Export as Markdown").click()
        download = downloading.value
        assert download.suggested_filename == "An-old-question-about-服务器.md"
        text = Path(download.path()).read_text(encoding="utf-8")
        assert text.startswith("# An old question about 服务器\n\n## You\n")
        assert "An **old** question about 服务器" in text and "## Assistant" in text
        assert not errors, errors
    finally:
        context.close()
