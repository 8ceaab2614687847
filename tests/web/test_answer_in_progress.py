"""A conversation answers one question at a time: the page's side of ``409 answer_in_progress``.

The page itself cannot send while an answer is being written in the conversation it shows
(Send turns to Stop); another tab can, and then the server refuses the question.
"""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import Page, expect

from conftest import RunningServer
from web.chat_page import ask, conversation_id, message_box, wait_for_end

pytestmark = pytest.mark.integration

SLOW = {"simulate": {"tokens_per_second": 20}}
LONG = "x" * 400  # 20 s at SLOW: still being written while the page asks


def test_the_page_says_an_answer_is_being_written_elsewhere_and_shows_it(
    page: Page, server: RunningServer
) -> None:
    """Another tab asked meanwhile: this one is refused (409), says so in a sentence, keeps
    the question in the box and shows the answer being written, with its Stop."""
    ask(page, "first")
    wait_for_end(page)
    with httpx.Client(base_url=server.url, timeout=10) as api:
        body = {"message": LONG, "conversation_id": conversation_id(page), "assistant": "echo"}
        elsewhere = api.post("/v1/chat", json={**body, "options": SLOW})
        assert elsewhere.status_code == 202, elsewhere.text
        try:
            message_box(page).fill("second")
            message_box(page).press("Enter")
            expect(page.locator("#notice-text")).to_have_text(
                "An answer is still being written in this conversation. Wait for it, or stop it."
            )
            expect(message_box(page)).to_have_value("second")
            expect(page.get_by_role("button", name="Stop", exact=True)).to_be_visible()
        finally:
            api.post(f"/v1/streams/{elsewhere.json()['stream_id']}/cancel")
