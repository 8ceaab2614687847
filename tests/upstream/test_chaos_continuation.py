"""Chaos: 200 answers over a chain of three upstreams that die at seeded points.

Each upstream is a chaos upstream (``scripted_chaos.py``) that resets, refuses with a 503,
breaks its body, sends an error event or garbage, stalls, or finishes, as its seeded plan for
the question says. Two assistants share the chain ``m0`` on ``u0``, then ``m1`` on ``u1``, then
``m2`` on ``u2``: ``chain`` with the default switch limit (2: never reached over three links)
and ``chain1`` with ``max_switches = 1``, each taking every other answer. Three links of three
models rather than one model on three upstreams, so that a switch to the wrong link shows in
the model each upstream is asked for, in the ``notice`` and in the stored sources.

Prefix styles: ``u1`` continues an assistant prefix (``vllm``), ``u0`` and ``u2`` are asked by
instruction (``none``), and repeat none, one or two words (kept: too few to tell from a genuine
start), or three words or more (dropped) of the text shown. ``u0`` is only ever asked first, so
its style never shows; ``u2`` is last, so a short repetition it keeps ends the answer rather
than meeting an upstream that never wrote it.

Before asking, the test predicts from the seed (``chaos_outcome``) each answer's end, the
upstreams asked, the parts written, the ``notice`` events and the text; then it checks the
stream three listeners read (the asker from the start, a second that resumes with
``Last-Event-ID`` while the answer runs, a third that replays it after its end), the stored
message and every upstream's request log against it. Answers run one after another: upstream
breakers are shared, so concurrent answers would choose upstreams by arrival order. A cooldown
of a millisecond and a retry policy of exactly one round (``backoff_initial`` > ``deadline``)
make every answer start with every breaker half-open and ask each upstream at most once.

The seed is ``CHAOS_SEED`` from the environment, else 18; it is printed and in every message.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from conftest import RunningServer, ServerFactory, read_events
from helpers import ask, data_of, follow, text_of
from typewriter import sse
from upstream.chaos_control import ChaosUpstream
from upstream.chaos_outcome import (
    TIMEOUT_CODE,
    UNAVAILABLE,
    Fate,
    Link,
    Part,
    anchor_text,
    fate_of,
    part_texts,
    planned_count,
    predict,
    reply_tokens,
    seam_text,
    short_repeat,
)
from upstream.chaos_schedule import Plan

DEFAULT_SEED = 18
SEED = int(os.environ.get("CHAOS_SEED", DEFAULT_SEED))
ANSWERS = 200
CHAIN = (Link("u0", "m0", False), Link("u1", "m1", True), Link("u2", "m2", False))
PREFIX_STYLE = {"u0": "none", "u1": "vllm", "u2": "none"}
ASSISTANTS = {"chain": 2, "chain1": 1}
"""Each assistant and its switch limit (``chain`` keeps the default, 2)."""
IDLE_SECONDS = 0.3
"""The idle timeout: a stall costs this much, and the test has some 60 of them."""
FIRST_SECONDS = 1.0
"""The first-token timeout, which also covers opening each upstream's response: a spurious one
there (a loaded machine) would end an answer that no response had begun, never continued.
Only a few stalls come before any chunk, so its length costs a few seconds at most."""
HELD_SHOWN = False
"""Text the seam still held back when its upstream failed is dropped, never shown."""


def assistant_of(index: int) -> str:
    return "chain" if index % 2 == 0 else "chain1"


def fates(seed: int) -> list[tuple[str, str, Fate]]:
    """Every answer of the run: its question, its assistant and its predicted fate."""
    out = []
    for index in range(ANSWERS):
        key, name = f"question {index}", assistant_of(index)
        out.append((key, name, fate_of(seed, key, CHAIN, ASSISTANTS[name])))
    return out


# --- the predictor, without a gateway ---------------------------------------------------------


def plans(*faults: str, after: int = 3, repeat: int = 0) -> list[Plan]:
    return [Plan(fault, after, repeat) for fault in faults]


@pytest.mark.parametrize(
    ("faults", "limit", "expected"),
    [
        # (finish reason, code, asked, writers, limited)
        (("status", "status", "status"), 2, ("error", UNAVAILABLE, "012", "", False)),
        (("status", "finish", "stall"), 2, ("stop", None, "01", "1", False)),
        (("reset", "status", "finish"), 2, ("stop", None, "012", "02", False)),
        (("stall", "broken", "stall"), 2, ("timeout", TIMEOUT_CODE, "012", "012", True)),
        (("status", "error", "stall"), 2, ("timeout", TIMEOUT_CODE, "012", "12", False)),
        (("status", "status", "garbage"), 2, ("error", "upstream_error", "012", "2", False)),
        (("error", "status", "status"), 2, ("error", UNAVAILABLE, "012", "0", False)),
        (("stall", "status", "status"), 2, ("error", UNAVAILABLE, "012", "0", False)),
        (("error", "stall", "finish"), 1, ("timeout", TIMEOUT_CODE, "01", "01", True)),
        (("stall", "status", "reset"), 1, ("error", "upstream_error", "012", "02", True)),
        (("garbage", "finish", "finish"), 1, ("stop", None, "01", "01", False)),
        (("status", "broken", "finish"), 1, ("stop", None, "012", "12", False)),
    ],
)
def test_the_prediction_follows_the_contract(
    faults: tuple[str, ...], limit: int, expected: tuple[str, str | None, str, str, bool]
) -> None:
    fate = predict(CHAIN, plans(*faults), limit)
    reason, code, asked, writers, limited = expected
    assert (fate.finish_reason, fate.code, fate.limited) == (reason, code, limited)
    assert fate.asked == tuple(f"u{i}" for i in asked)
    assert [p.link.upstream for p in fate.parts] == [f"u{i}" for i in writers]
    assert fate.notices == [
        (f"u{a}", f"u{b}", f"m{b}") for a, b in zip(writers, writers[1:], strict=False)
    ]


def test_the_seam_keeps_a_short_repetition_and_drops_a_long_one() -> None:
    """The rule of thumb the test checks ``stop`` answers by, seen on hand-made parts."""
    shown = "The river stone light"
    instruction = Link("u2", "m2", False)
    short = Part(instruction, Plan("finish", 0, 2), None)
    long = Part(instruction, Plan("finish", 0, 3), None)
    assert seam_text(shown, ["stone", " light", " north."], short, finished=True) == (
        " stone light north."
    )
    assert seam_text(shown, ["river", " stone", " light", " north."], long, finished=True) == (
        " north."
    )
    # Cut while the seam still waits to see whether the repetition is long enough.
    assert seam_text(shown, ["river", " stone"], long, finished=False) == ""
    assert seam_text(shown, ["river", " stone"], long, finished=True) == " river stone"
    prefix = Part(Link("u1", "m1", True), Plan("finish", 0, 3), None)
    assert seam_text(shown, [" north", "."], prefix, finished=True) == " north."


def test_the_default_seed_meets_every_rule() -> None:
    """The fixed seed's 200 answers reach every ending and every kind of seam, and the seam
    module's text agrees with the rule of thumb on every one (so a stop answer reads exactly
    ``answer_text``, or keeps a short repetition where one was made)."""
    seen: Counter[str] = Counter()
    for key, _, fate in fates(DEFAULT_SEED):
        texts = part_texts(DEFAULT_SEED, key, fate, held_shown=HELD_SHOWN)
        anchor = anchor_text(DEFAULT_SEED, key, fate, texts)
        text = "".join(texts)
        assert anchor is not None and (
            text == anchor if fate.finish_reason == "stop" else anchor.startswith(text)
        ), (key, fate.describe())
        seen[f"{fate.finish_reason}/{fate.code}"] += 1
        seen["limited " + fate.finish_reason] += fate.limited
        seen["last link stalled"] += not fate.limited and fate.finish_reason == "timeout"
        seen["short repetition kept"] += short_repeat(fate, texts) >= 0
        seen["held text dropped"] += texts != part_texts(DEFAULT_SEED, key, fate, held_shown=True)
        seen["stopped after two switches"] += fate.finish_reason == "stop" and fate.switches == 2
        for index, part in enumerate(fate.parts):
            seen[f"{'prefix' if part.link.prefix else 'instruction'} seam"] += index > 0
            seen["stall before any text"] += part.plan.fault == "stall" and part.plan.after == 0
            seen["empty part"] += not texts[index]
        seen["refused continuation"] += len(fate.asked) > len(fate.parts) and bool(fate.parts)
    for kind in (
        "stop/None",
        f"timeout/{TIMEOUT_CODE}",
        f"error/{UNAVAILABLE}",
        "error/upstream_error",
        "limited timeout",
        "limited error",
        "last link stalled",
        "short repetition kept",
        "held text dropped",
        "stopped after two switches",
        "prefix seam",
        "instruction seam",
        "stall before any text",
        "empty part",
        "refused continuation",
    ):
        assert seen[kind] > 0, (kind, seen)


# --- the run ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chaos_upstreams() -> Iterator[list[ChaosUpstream]]:
    started: list[ChaosUpstream] = []
    try:
        for _ in CHAIN:
            started.append(ChaosUpstream().start())
        yield started
    finally:
        for server in started:
            server.stop()


def chaos_gateway(make_server: ServerFactory, ups: Sequence[ChaosUpstream]) -> RunningServer:
    upstreams = [
        {
            "name": link.upstream,
            "base_url": up.base_url,
            "models": [link.model],
            "headers_timeout": 5,
            "breaker_cooldown": 0.001,
            "breaker_cooldown_max": 0.001,
            "prefix_style": PREFIX_STYLE[link.upstream],
        }
        for link, up in zip(CHAIN, ups, strict=True)
    ]
    first, *rest = CHAIN
    chain = {
        "model": first.model,
        "upstreams": [first.upstream],
        "fallbacks": [{"model": link.model, "upstreams": [link.upstream]} for link in rest],
        "first_token_timeout": FIRST_SECONDS,
        "idle_timeout": IDLE_SECONDS,
        "total_timeout": 60,
    }
    assistants = [
        {"name": name, **chain, **({} if limit == 2 else {"max_switches": limit})}
        for name, limit in ASSISTANTS.items()
    ]
    # One round of attempts: the pause after it is past the deadline.
    retry = {"deadline": 5, "backoff_initial": 10, "backoff_max": 10}
    return make_server(upstreams=upstreams, assistants=assistants, retry=retry)


@dataclass
class Seen:
    """One answer as the listeners read it and the store keeps it."""

    key: str
    assistant: str
    fate: Fate
    listeners: list[list[sse.Event]]
    stored: dict[str, Any]
    problems: list[str] = field(default_factory=list)
    short_resets: int = 0

    def check(self, ok: bool, what: str, *detail: Any) -> None:
        if not ok:
            self.problems.append(
                f"seed={SEED} {self.key!r} ({self.assistant}) {self.fate.describe()}: "
                f"{what} {detail!r}"
            )


async def listen(client: httpx.AsyncClient, url: str) -> list[list[sse.Event]]:
    """The asker from the start; a listener resuming after the asker's second event while the
    answer runs; and one replaying the whole answer after its end."""
    async with client.stream("GET", url) as response:
        assert response.status_code == 200, response.status_code
        head = await read_events(response, limit=2)
        resumed = asyncio.create_task(follow(client, url, last_event_id=head[-1].id))
        rest = await read_events(response)
    late = head + await resumed
    replay = await follow(client, url)
    return [head + rest, late, replay]


async def run_answer(client: httpx.AsyncClient, key: str, name: str, fate: Fate) -> Seen:
    started = await ask(client, key, assistant=name)
    listeners = await listen(client, started["events_url"])
    conversation = await client.get(f"/v1/conversations/{started['conversation_id']}")
    stored = conversation.json()["messages"][-1]
    return Seen(key, name, fate, listeners, stored)


def expected_texts(seen: Seen) -> list[str]:
    """Each part's text as the seed says; a reset part may have lost what the gateway had not
    read yet, so its length is taken from the stored sources when it is shorter."""
    fate, text, sources = seen.fate, seen.stored["text"], seen.stored.get("sources") or []
    shown, texts = "", []
    for index, part in enumerate(fate.parts):
        tokens = reply_tokens(SEED, seen.key, shown, part)
        planned = planned_count(tokens, part)
        finished = part.failure is None or HELD_SHOWN
        added = seam_text(shown, tokens[:planned], part, finished=finished)
        if part.plan.fault == "reset" and index < len(sources):
            observed = text[sources[index]["start"] : sources[index]["end"]]
            for count in range(planned, -1, -1):
                candidate = seam_text(shown, tokens[:count], part, finished=finished)
                if candidate == observed:
                    added, seen.short_resets = candidate, seen.short_resets + (count < planned)
                    break
        texts.append(added)
        shown += added
    return texts


def check_answer(seen: Seen) -> None:
    fate, stored, check = seen.fate, seen.stored, seen.check
    text = stored["text"]
    for number, events in enumerate(seen.listeners):
        names = [e.event for e in events]
        check(names[0] == "start" and names[-1] == "end", f"listener {number} events", names)
        end = data_of(events[-1])
        check(end.get("finish_reason") == fate.finish_reason, f"listener {number} end", end)
        errors = [data_of(e)["code"] for e in events if e.event == "error"]
        check(errors == ([fate.code] if fate.code else []), f"listener {number} errors", errors)
        check(text_of(events) == text, f"listener {number} text", text_of(events), text)
        notices = [data_of(e) for e in events if e.event == "notice"]
        check(
            [(n.get("code"), n.get("from"), n.get("to"), n.get("model")) for n in notices]
            == [("failover", *n) for n in fate.notices],
            f"listener {number} notices",
            notices,
        )
        check(end.get("usage") == stored["usage"], f"listener {number} usage", end, stored)
    check(stored["finish_reason"] == fate.finish_reason, "stored finish", stored["finish_reason"])
    model = fate.parts[0].link.model if fate.parts else CHAIN[0].model
    check(stored["model"] == model, "stored model", stored["model"])
    texts = expected_texts(seen)
    check(text == "".join(texts), "stored text", text, "".join(texts))
    anchor = anchor_text(SEED, seen.key, fate, texts)
    if anchor is not None:
        whole = text == anchor if fate.finish_reason == "stop" else anchor.startswith(text)
        check(whole, "text against the answer written once", text, anchor)
    expected_sources, at = [], 0
    for index, (part, added) in enumerate(zip(fate.parts, texts, strict=True)):
        last = index == len(fate.parts) - 1
        expected_sources.append(
            {
                "upstream": part.link.upstream,
                "model": part.link.model,
                "start": at,
                "end": at + len(added),
                "failure": None if last else part.failure,
            }
        )
        at += len(added)
    sources = stored.get("sources")
    check(isinstance(sources, list), "stored sources", sources)
    sources = sources if isinstance(sources, list) else []
    check(
        [{k: s.get(k) for k in expected_sources[0]} for s in sources] == expected_sources
        if expected_sources
        else sources == [],
        "stored sources",
        sources,
        expected_sources,
    )
    for index, source in enumerate(sources):
        gap = source.get("gap_ms")
        if index == 0:
            check(gap is None, "first part's gap", source)
        elif source.get("end", 0) > source.get("start", 0):
            check(isinstance(gap, int | float) and gap >= 0, "gap of a part with text", source)
    usage = stored["usage"] or {}
    exact = fate.finish_reason == "stop" and len(fate.parts) == 1
    check(usage.get("estimated", False) is not exact, "estimated usage", usage)


def check_upstream_logs(ups: Sequence[ChaosUpstream], seen: Sequence[Seen]) -> list[str]:
    """Every upstream was asked exactly what the fates say: each question once at most, the
    link's model, and a continuation carrying exactly the text shown so far, in its style."""
    problems = []
    by_key = {s.key: s for s in seen}
    for link, up in zip(CHAIN, ups, strict=True):
        records = [r for r in up.requests() if r.get("chaos")]
        keys = Counter(r["chaos"]["key"] for r in records)
        expected = Counter(s.key for s in seen if link.upstream in s.fate.asked)
        if keys != expected:
            problems.append(
                f"seed={SEED} {link.upstream} asked {keys - expected} too many, "
                f"{expected - keys} too few"
            )
        for record in records:
            chaos, body = record["chaos"], record["body"]
            s = by_key.get(chaos["key"])
            if s is None:
                continue
            where = f"seed={SEED} {chaos['key']!r} at {link.upstream}"
            if record["model"] != link.model or chaos["mismatch"]:
                problems.append(f"{where}: model {record['model']}, mismatch {chaos['mismatch']}")
            writers = [p.link.upstream for p in s.fate.parts]
            if link.upstream not in writers:
                continue
            sources = s.stored.get("sources") or []
            at = writers.index(link.upstream)
            start = sources[at].get("start") if at < len(sources) else None
            shown = s.stored["text"][:start] if isinstance(start, int) else None
            if (chaos["partial"] or "") != (shown or ""):
                problems.append(f"{where}: sent {chaos['partial']!r}, shown {shown!r}")
            if shown and chaos["style"] != ("prefix" if link.prefix else "instruction"):
                problems.append(f"{where}: asked by {chaos['style']}")
            vllm = body.get("continue_final_message") is True
            vllm = vllm and body.get("add_generation_prompt") is False
            if bool(shown) and link.prefix and not vllm:
                problems.append(f"{where}: no continue_final_message in {sorted(body)}")
    return problems


def outcome_of(events: Sequence[sse.Event]) -> str:
    """``finish reason/error code`` as a listener read them."""
    codes = [data_of(e).get("code") for e in events if e.event == "error"]
    end = [data_of(e).get("finish_reason") for e in events if e.event == "end"]
    return f"{end[-1] if end else None}/{codes[-1] if codes else None}"


def percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


@pytest.mark.anyio
@pytest.mark.integration
async def test_chaos_answers_end_as_their_seed_says(
    chaos_upstreams: list[ChaosUpstream],
    make_server: ServerFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with capsys.disabled():  # in every run's output, `make test`'s included
        print(f"\nchaos seed: {SEED} (set CHAOS_SEED to change it)")
    for link, up in zip(CHAIN, chaos_upstreams, strict=True):
        up.reset()
        up.plan(SEED, link.upstream)
    server = chaos_gateway(make_server, chaos_upstreams)
    seen: list[Seen] = []
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        # The readiness check opens the gateway's HTTP session and a connection to each
        # upstream (asking for its models, not planned): the first answer is not the one
        # that pays for them.
        assert (await client.get("/readyz")).status_code == 200
        began = time.monotonic()
        for key, name, fate in fates(SEED):
            answer = await run_answer(client, key, name, fate)
            check_answer(answer)
            seen.append(answer)
    wall = time.monotonic() - began
    failing = [s for s in seen if s.problems]
    # One line per failing answer (its first problem), then what the upstreams' logs say.
    problems = [f"{s.problems[0]} (+{len(s.problems) - 1} more)" for s in failing]
    problems += check_upstream_logs(chaos_upstreams, seen)

    outcomes = Counter(outcome_of(s.listeners[0]) for s in seen)
    by_assistant: dict[str, Counter[str]] = defaultdict(Counter)
    for s in seen:
        by_assistant[s.assistant][outcome_of(s.listeners[0])] += 1
    seams = sorted(
        (float(source["gap_ms"]), s.key, f"{before['upstream']}->{source['upstream']}")
        for s in seen
        for before, source in itertools.pairwise(s.stored.get("sources") or [])
        if isinstance(source.get("gap_ms"), int | float)
    )
    gaps = [gap for gap, _, _ in seams]
    notices = sum(e.event == "notice" for s in seen for e in s.listeners[0])
    lines = [f"chaos: {len(seen)} answers in {wall:.1f} s, seed {SEED}"]
    lines += [f"  {outcome:<32} {count:>4}" for outcome, count in sorted(outcomes.items())]
    lines += [
        f"  {name:<7} (max_switches {ASSISTANTS[name]}) {dict(sorted(counts.items()))}"
        for name, counts in sorted(by_assistant.items())
    ]
    lines.append(
        f"  switches (notices read) {notices}, predicted {sum(s.fate.switches for s in seen)};"
        f" answers ended at the switch limit {sum(s.fate.limited for s in seen)};"
        f" resets that lost text {sum(s.short_resets for s in seen)}"
    )
    lines.append(
        f"  failure -> first continued token: p50 {percentile(gaps, 0.5):.1f} ms,"
        f" p99 {percentile(gaps, 0.99):.1f} ms over {len(gaps)} seams;"
        f" slowest {', '.join(f'{k!r} {w} {g:.0f} ms' for g, k, w in seams[-3:])}"
    )
    with capsys.disabled():
        print("\n".join(lines))
    assert not problems, (
        f"seed={SEED}: {len(failing)} answer(s) of {len(seen)} not as predicted:\n"
        + "\n".join(problems[:15])
    )
    assert outcomes == Counter(f"{f.finish_reason}/{f.code}" for _, _, f in fates(SEED)), SEED
    assert gaps, f"seed={SEED}: no seam recorded a gap"
