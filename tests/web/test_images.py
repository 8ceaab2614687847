"""Attaching images on the page, in a real Chromium: by the Attach button, by pasting and by
dropping, only while the chosen assistant accepts images; shown before sending (removable), in
the question once sent, and again after a reload (fetched from /v1/attachments)."""

from __future__ import annotations

import base64
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from images import png
from web.chat_page import conversation, conversation_id, message_box, wait_for_end

pytestmark = pytest.mark.integration

RED, BLUE, GREEN = (
    png(160, 120, (220, 30, 30)),
    png(100, 100, (30, 30, 220)),
    png(90, 120, (30, 160, 60)),
)

# A File in a DataTransfer, dispatched as the browser dispatches a paste or a drop.
DISPATCH = """([kind, b64, name]) => {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const data = new DataTransfer();
    data.items.add(new File([bytes], name, { type: "image/png" }));
    const init = { bubbles: true, cancelable: true };
    if (kind === "paste") {
        document.getElementById("message")
            .dispatchEvent(new ClipboardEvent("paste", { ...init, clipboardData: data }));
    } else {
        const composer = document.getElementById("composer");
        composer.dispatchEvent(new DragEvent("dragover", { ...init, dataTransfer: data }));
        composer.dispatchEvent(new DragEvent("drop", { ...init, dataTransfer: data }));
    }
}"""

ALL_DRAWN = """(n) => {
    const images = [...document.querySelectorAll('.msg.user .question-image')];
    return images.length === n && images.every((i) => i.complete && i.naturalWidth > 0);
}"""


def dispatch(page: Page, kind: str, data: bytes, name: str) -> None:
    page.evaluate(DISPATCH, [kind, base64.b64encode(data).decode(), name])


def test_images_are_attached_sent_and_shown_again_after_a_reload(
    page: Page, api: httpx.Client, screenshots: Path
) -> None:
    attach = page.get_by_role("button", name="Attach image")
    expect(attach).to_be_hidden()  # the default assistant does not accept images
    dispatch(page, "paste", RED, "ignored.png")
    expect(page.locator(".thumb")).to_have_count(0)

    page.get_by_label("Assistant").select_option("echo")
    expect(attach).to_be_visible()
    page.locator("#attach-input").set_input_files(
        [{"name": "red.png", "mimeType": "image/png", "buffer": RED}]
    )
    expect(page.locator(".thumb img")).to_have_count(1)
    page.get_by_role("button", name="Remove red.png").click()  # removable before sending
    expect(page.locator(".thumb")).to_have_count(0)
    page.locator("#attach-input").set_input_files(
        [{"name": "red.png", "mimeType": "image/png", "buffer": RED}]
    )
    dispatch(page, "paste", BLUE, "blue.png")
    expect(page.locator(".thumb img")).to_have_count(2)
    message_box(page).fill("two colours")
    page.screenshot(path=str(screenshots / "images-attached.png"))
    message_box(page).press("Enter")
    wait_for_end(page)
    expect(page.locator(".thumb")).to_have_count(0)  # sent with the question
    page.wait_for_function(ALL_DRAWN, arg=2)

    dispatch(page, "drop", GREEN, "green.png")
    expect(page.locator(".thumb img")).to_have_count(1)
    message_box(page).fill("and this one")
    message_box(page).press("Enter")
    wait_for_end(page)
    page.wait_for_function(ALL_DRAWN, arg=3)

    stored = conversation(api, conversation_id(page))["messages"]
    sizes = [[a["size"] for a in m["attachments"]] for m in stored if m["role"] == "user"]
    assert sizes == [[len(RED), len(BLUE)], [len(GREEN)]]

    page.reload()
    page.wait_for_function(ALL_DRAWN, arg=3)
    widths = page.locator(".msg.user .question-image").evaluate_all(
        "(images) => images.map((i) => i.naturalWidth)"
    )
    assert widths == [160, 100, 90]
    page.screenshot(path=str(screenshots / "images-in-conversation.png"))
