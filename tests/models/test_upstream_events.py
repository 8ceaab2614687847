"""What an upstream's event stream may hold, end to end through a real gateway.

A 100 MB event ends the answer ``upstream_event_too_large`` while the gateway's
memory stays within a few times ``max_event_chars``; line separators that are
not SSE line ends (U+2028, U+2029, NEL) stay text, whole or cut byte by byte.
"""

from __future__ import annotations

import time
import tracemalloc
from typing import Any

import pytest

from helpers import data_of, last, text_of
from upstream.control import Upstream
from upstream.fixtures import Gateway, answer

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

MiB = 2**20
DEFAULT_CAP = 4 * MiB  # UpstreamConfig.max_event_chars
# What the process holds besides the event's characters: socket reads not yet handed to
# the reader (aiohttp pauses reading past 128 KiB; under httpx, anyio queued up to ~6 MiB),
# the test's own client, and the allocator's slack.
OVERHEAD = 10 * MiB


@pytest.mark.parametrize("cap", [None, MiB], ids=["default-cap", "1MiB-cap"])
async def test_a_100_mb_event_ends_the_answer_within_bounded_memory(
    upstream: Upstream, gateway: Gateway, cap: int | None
) -> None:
    upstream.script({"oversize_after_tokens": 2, "oversize_bytes": 100 * MiB})
    settings = {"max_event_chars": cap} if cap else {}
    server = gateway(upstream, upstream_settings=settings)
    tracemalloc.start()  # every thread: the gateway's and this test's
    try:
        started = time.monotonic()
        events = await answer(server)
        elapsed = time.monotonic() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # The filler is ASCII: a character is a byte, in the parser's strings as on the wire.
    # The reader holds at most the cap and one read; twice the cap leaves room for a copy.
    assert peak < 2 * (cap or DEFAULT_CAP) + OVERHEAD, f"peak {peak / MiB:.1f} MiB"
    assert text_of(events) == "Hello from "
    error = data_of([e for e in events if e.event == "error"][0])
    assert error["code"] == "upstream_event_too_large"
    assert str(cap or DEFAULT_CAP) in error["message"]
    assert last(events, "end")["finish_reason"] == "error"
    record = upstream.wait_for_disconnect(0, timeout=5)  # the gateway hung up mid-event
    assert record["tokens_sent"] == 2 and not record["completed"]
    assert elapsed < 10, f"took {elapsed:.2f} s"


ODD = ["a\u2028b ", "c\u2029d ", "e\x85f ", "g\x0bh\x0c\x1c\x1d\x1e ", "\r\n", "é🎉 ", "\u2028"]


@pytest.mark.parametrize(
    "delivery",
    [{}, {"write_bytes": 1}, {"write_bytes": 7}],
    ids=["whole", "byte-by-byte", "7-byte-writes"],
)
async def test_line_separators_inside_text_arrive_intact(
    upstream: Upstream, gateway: Gateway, delivery: dict[str, Any]
) -> None:
    upstream.script({"tokens": ODD, "raw_utf8": True, "finish_reason": "length", **delivery})
    events = await answer(gateway(upstream))
    assert text_of(events) == "".join(ODD)
    end = last(events, "end")
    assert end["finish_reason"] == "length"
    assert end["usage"]["completion_tokens"] == len(ODD)
