"""The page tests' fixtures: Debian's Chromium (headless, driven by Playwright), a page on a
real server, and where screenshots go (``test-output/screenshots/``, git-ignored).

Registered in ``tests/conftest.py``, as ``upstream.fixtures`` is.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, expect, sync_playwright

from browser import CHROMIUM, CHROMIUM_ARGS
from conftest import RunningServer
from web.chat_page import open_context, watch

VENDOR = Path(__file__).parents[2] / "src" / "typewriter" / "web" / "vendor"


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: run `make test` (scripts/ensure-test-services.sh installs "
            "Debian's chromium)",
            pytrace=False,
        )
    if not (VENDOR / "marked.js").exists():
        pytest.fail("the page's libraries are missing: run `make vendor`", pytrace=False)
    browser = playwright.chromium.launch(
        executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
    )
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture(scope="session")
def screenshots(pytestconfig: pytest.Config) -> Path:
    folder = Path(pytestconfig.rootpath) / "test-output" / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    context = open_context(browser)
    try:
        yield context
    finally:
        context.close()


@pytest.fixture
def page(context: BrowserContext, server: RunningServer) -> Iterator[Page]:
    page = context.new_page()
    errors = watch(page)
    page.goto(server.url + "/")
    expect(page.get_by_label("Assistant")).to_have_value("default")
    yield page
    assert not errors, errors


@pytest.fixture
def api(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        yield client
