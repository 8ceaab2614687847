"""Chaos under load: many answers at once over three chaos upstreams, checked by invariants.

``test_chaos_continuation`` predicts each answer's fate, which needs answers one at a time
(breakers are shared, so concurrent answers choose upstreams by arrival order). Here 60
answers run 20 at a time over the same kind of chain, paced so that they overlap, and what
cannot depend on the order is checked for every answer:

* every listener (the asker from the start, and a replay after the end) reads exactly the
  stored text, with event ids 1..n once each;
* the ``notice`` events name the stored parts' upstreams in order, and the parts' character
  ranges cover the text end to end;
* an answer that ends ``stop`` is exactly the answer its question has on every upstream
  (every upstream continues an assistant prefix, so nothing is repeated or lost at a seam);
  any other answer is a beginning of it;
* nothing the listeners read is missing from the store.

Resets are left out (they lose unread bytes, so which text was shown is not known here), and
503s (which only move an answer on before it begins). The seed is ``CHAOS_SEED`` + 1000.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from conftest import ServerFactory
from helpers import ask, data_of, follow, text_of
from typewriter import sse
from upstream.chaos_control import ChaosUpstream
from upstream.chaos_schedule import answer_text

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

SEED = int(os.environ.get("CHAOS_SEED", 18)) + 1000
ANSWERS, AT_ONCE = 60, 20
FAULTS = ["finish", "finish", "broken", "error", "garbage", "stall"]
UPSTREAMS = ("u0", "u1", "u2")


@pytest.fixture(scope="module")
def chaos_three() -> Iterator[list[ChaosUpstream]]:
    ups = [ChaosUpstream().start() for _ in UPSTREAMS]
    yield ups
    for up in ups:
        up.stop()


async def one_answer(client: httpx.AsyncClient, index: int) -> dict[str, Any]:
    """Ask, follow from the start, replay after the end, and read the stored answer."""
    key = f"question {index}"
    started = await ask(client, key, assistant="chain")
    live = await follow(client, started["events_url"])
    replay = await follow(client, started["events_url"], last_event_id="0")
    stored = await client.get(f"/v1/conversations/{started['conversation_id']}")
    assert stored.status_code == 200, stored.text
    (message,) = [m for m in stored.json()["messages"] if m["id"] == started["message_id"]]
    return {"key": key, "live": live, "replay": replay, "stored": message}


def problems_of(seen: dict[str, Any]) -> list[str]:
    key, stored = seen["key"], seen["stored"]
    live: list[sse.Event] = seen["live"]
    where = f"seed={SEED} {key!r}"
    problems = []
    text, whole = stored["text"], answer_text(SEED, key)
    for name in ("live", "replay"):
        events: list[sse.Event] = seen[name]
        if text_of(events) != text:
            problems.append(f"{where}: {name} read {text_of(events)!r}, stored {text!r}")
        if [e.id for e in events] != [str(n) for n in range(1, len(events) + 1)]:
            problems.append(f"{where}: {name} ids {[e.id for e in events]}")
    end = data_of(live[-1]) if live and live[-1].event == "end" else {}
    if end.get("finish_reason") != stored["finish_reason"]:
        problems.append(f"{where}: ended {end}, stored {stored['finish_reason']}")
    if stored["finish_reason"] == "stop" and text != whole:
        problems.append(f"{where}: stop with {text!r}, not {whole!r}")
    if not whole.startswith(text):
        problems.append(f"{where}: {text!r} does not begin {whole!r}")
    sources = stored["sources"]
    notices = [data_of(e) for e in live if e.event == "notice"]
    hops = [(a["upstream"], b["upstream"]) for a, b in itertools.pairwise(sources)]
    if [(n["from"], n["to"]) for n in notices] != hops:
        problems.append(f"{where}: notices {notices}, sources {sources}")
    ranges = [(s["start"], s["end"]) for s in sources]
    if sources and (ranges[0][0] != 0 or ranges[-1][1] != len(text)):
        problems.append(f"{where}: sources {ranges} do not cover {len(text)} characters")
    if any(a[1] != b[0] for a, b in itertools.pairwise(ranges)):
        problems.append(f"{where}: sources {ranges} are not contiguous")
    return problems


async def test_concurrent_chaos_answers_keep_every_shown_character(
    chaos_three: list[ChaosUpstream],
    make_server: ServerFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, up in zip(UPSTREAMS, chaos_three, strict=True):
        up.reset()
        up.plan(SEED, name, faults=FAULTS, tokens_per_second=200)
    server = make_server(
        upstreams=[
            {
                "name": name,
                "base_url": up.base_url,
                "prefix_style": "vllm",
                "breaker_cooldown": 0.001,
                "breaker_cooldown_max": 0.001,
            }
            for name, up in zip(UPSTREAMS, chaos_three, strict=True)
        ],
        assistants=[
            {
                "name": "chain",
                "model": "m",
                "upstreams": list(UPSTREAMS),
                "idle_timeout": 0.5,
                "first_token_timeout": 2,
            }
        ],
        retry={"deadline": 5, "backoff_initial": 0.05, "backoff_max": 0.2},
    )
    gate = asyncio.Semaphore(AT_ONCE)

    async def bounded(client: httpx.AsyncClient, index: int) -> dict[str, Any]:
        async with gate:
            return await one_answer(client, index)

    limits = httpx.Limits(max_connections=2 * AT_ONCE + 10)
    async with httpx.AsyncClient(base_url=server.url, timeout=60, limits=limits) as client:
        assert (await client.get("/readyz")).status_code == 200
        seen = await asyncio.gather(*(bounded(client, i) for i in range(ANSWERS)))

    problems = [p for s in seen for p in problems_of(s)]
    ends = Counter(s["stored"]["finish_reason"] for s in seen)
    switches = sum(len(s["stored"]["sources"]) - 1 for s in seen if s["stored"]["sources"])
    with capsys.disabled():
        print(f"\nconcurrent chaos: seed {SEED}, {ANSWERS} answers {AT_ONCE} at a time: "
              f"{dict(sorted(ends.items()))}, {switches} switches")  # fmt: skip
    assert not problems, "\n".join(problems[:15])
    assert switches > 0 and ends["stop"] > 0, (SEED, ends, switches)
