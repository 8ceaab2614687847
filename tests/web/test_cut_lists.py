"""An answer cut right after a list marker shows no empty bullet, while typing or once cut.

The echo model sends the question back in pieces of four characters, so a question can be
laid out for an answer to pause (``stall_after_tokens``), stop at its length limit
(``max_tokens``) or fail (``fail_after_tokens``) exactly after "- " or "3.", the start of an
item with no text yet. A MutationObserver watches every change of the answers on the page: an
empty list item that was ever put on the page, even for one frame, is caught.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from web.chat_page import (
    answers,
    ask,
    assistant_messages,
    conversation_id,
    wait_for_end,
    with_options,
)

pytestmark = pytest.mark.integration

PIECE = 4  # characters in each piece of the echo model

# Counts every time the answers held an empty list item.
WATCH_EMPTY_ITEMS = """() => {
    window.emptyItems = 0;
    const empty = () => [...document.querySelectorAll('.msg.assistant .md li')]
        .some((item) => item.textContent.trim() === '');
    new MutationObserver(() => { if (empty()) window.emptyItems += 1; })
        .observe(document.body, { subtree: true, childList: true, characterData: true });
}"""


def cut_list(marker: str) -> tuple[str, str]:
    """A question whose pieces end exactly after ``marker``, the third item's: (cut, whole).

    The last piece of the cut also holds the last letter of "omega", so once the second item
    reads "omega" the marker has arrived too.
    """
    second, third = ("- omega", "- ") if marker == "-" else ("2. omega", "3.")
    head = "Steps:"
    while True:
        cut = f"{head}\n\n{'- ' if marker == '-' else '1. '}alpha\n{second}\n{third}"
        if len(cut) % PIECE == 0:
            break
        head += ":"
    assert cut[-PIECE:].startswith("a\n"), cut
    return cut, f"{cut} gamma\n\nDone."


def items(page: Page) -> list[str]:
    texts: list[str] = answers(page).last.locator("li").all_inner_texts()
    return texts


def stored_text(api: httpx.Client, page: Page) -> str:
    text: str = assistant_messages(api, conversation_id(page))[-1]["text"]
    return text


@pytest.mark.parametrize(
    ("marker", "ending", "note"),
    [
        ("-", "stopped", "Stopped."),
        ("1.", "stopped", "Stopped."),
        ("-", "length", "Cut short: the answer reached its length limit."),
        ("1.", "failed", "The model failed while answering. Regenerate to try again."),
    ],
)
def test_no_empty_bullet_while_typing_or_once_cut(
    page: Page, api: httpx.Client, screenshots: Path, marker: str, ending: str, note: str
) -> None:
    cut, whole = cut_list(marker)
    pieces = len(cut) // PIECE
    options: dict[str, Any] = {
        "stopped": {"simulate": {"stall_after_tokens": pieces}},
        "length": {"max_tokens": pieces},
        "failed": {"simulate": {"fail_after_tokens": pieces}},
    }[ending]
    with_options(page, **options)
    page.evaluate(WATCH_EMPTY_ITEMS)
    ask(page, whole)
    expect(answers(page).last.locator("li").nth(1)).to_have_text("omega")
    if ending == "stopped":
        # the answer pauses right after the marker, still being written
        expect(page.locator(".msg.assistant.streaming")).to_have_count(1)
        assert items(page) == ["alpha", "omega"]
        page.get_by_role("button", name="Stop", exact=True).click()
    wait_for_end(page)
    expect(page.locator(".msg.assistant .answer-note")).to_have_text(note)
    assert items(page) == ["alpha", "omega"]
    assert stored_text(api, page) == cut  # the answer did end right after the marker
    assert page.evaluate("window.emptyItems") == 0, "an empty list item was shown"
    kind = "bullets" if marker == "-" else "numbers"
    page.screenshot(path=screenshots / f"cut-list-{kind}-{ending}.png")
    page.reload()
    expect(answers(page)).to_have_count(1)
    assert items(page) == ["alpha", "omega"]


def test_a_finished_answer_is_shown_as_written(page: Page) -> None:
    """Only an unfinished answer loses its last marker: a whole one is Markdown as it is."""
    ask(page, "A heading\n-")  # a setext heading, complete
    wait_for_end(page)
    expect(answers(page).last.locator("h2")).to_have_text("A heading")
