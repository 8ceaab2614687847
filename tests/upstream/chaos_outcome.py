"""What an answer over chaos upstreams must end as, worked out from the seed before it is asked.

The chaos test asks hundreds of answers of a chain of chaos upstreams (``scripted_chaos.py``)
and must know, for each, what the gateway owes it. The upstreams' plans are a pure function of
the seed, the upstream's name, the question and the attempt (``chaos_schedule``), and each
answer asks its own question of each upstream at most once (the gateway never goes back up its
chain), so every attempt is attempt 0 and the fate below follows from the seed alone.

The rules are the gateway's continuation contract:

* Before a response began, an upstream that refuses (a 503: ``status``) passes the answer on
  to the next link, as does one refusing to continue it; no link left: ``error``,
  ``upstream_unavailable``.
* After a response began, the answer finishes (``stop``) or fails (a reset, a broken body, an
  error event, garbage, a stall). A failure is continued on the links after the failing one
  while fewer than ``max_switches`` switches were made; on the last link, or at the limit, the
  answer ends with the failure's own reason: ``timeout`` for a stall, else ``error``.

The text: each part's upstream replies as ``chaos_schedule.reply`` says to the request the
gateway sends (the text shown so far as an assistant prefix, or as an assistant message and
the instruction to continue), and the gateway joins it at the seam with its documented seam
rule (``typewriter.models.continuation.SeamTrimmer``: a repetition of three words or more is
dropped, a shorter one is kept). :func:`part_texts` plays that out; what a part still held back
at the seam when its upstream failed is taken to be dropped (never shown) unless told otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from typewriter.models.continuation import SeamTrimmer
from upstream.chaos_schedule import CONTINUE_MARKER, Plan, answer_text, plan, reply

UNAVAILABLE = "upstream_unavailable"
TIMEOUT_CODE = "upstream_timeout"
FAILURE_CODE = {
    "reset": "upstream_error",
    "broken": "upstream_error",
    "error": "upstream_error",
    "garbage": "upstream_error",
    "stall": "stall",
}
"""What the stored ``sources[i].failure`` says of a part that ended early, per fault."""


@dataclass(frozen=True, slots=True)
class Link:
    """One attempt of an assistant's chain: its upstream, the model it is asked for, and
    whether it is asked to continue with an assistant prefix (``vllm``/``deepseek``) rather
    than an instruction (``none``)."""

    upstream: str
    model: str
    prefix: bool


@dataclass(frozen=True, slots=True)
class Part:
    """What one upstream wrote of an answer: its link, its plan, and why it ended early
    (``FAILURE_CODE``; None: it finished the answer)."""

    link: Link
    plan: Plan
    failure: str | None


@dataclass(frozen=True, slots=True)
class Fate:
    """An answer's predicted end: its finish reason and error code, every upstream asked in
    order (refusals too), the parts written, and whether the switch limit ended it."""

    finish_reason: str
    code: str | None
    asked: tuple[str, ...]
    parts: tuple[Part, ...]
    limited: bool = False

    @property
    def switches(self) -> int:
        return max(len(self.parts) - 1, 0)

    @property
    def notices(self) -> list[tuple[str, str, str]]:
        """``(from, to, model)`` of each ``notice`` the stream must carry, in order."""
        return [
            (before.link.upstream, after.link.upstream, after.link.model)
            for before, after in zip(self.parts, self.parts[1:], strict=False)
        ]

    def describe(self) -> str:
        """One line for assertion messages: what each link was planned to do."""
        parts = ", ".join(
            f"{p.link.upstream}:{p.plan.fault}@{p.plan.after}/r{p.plan.repeat}" for p in self.parts
        )
        return f"{self.finish_reason}/{self.code} asked={list(self.asked)} parts=[{parts}]"


def predict(chain: Sequence[Link], plans: Sequence[Plan], max_switches: int) -> Fate:
    """The fate of an answer whose links meet ``plans`` (one per link, in chain order)."""
    asked: list[str] = []
    parts: list[Part] = []

    def first_answering(start: int) -> int | None:
        for index in range(start, len(chain)):
            asked.append(chain[index].upstream)
            if plans[index].fault != "status":
                return index
        return None

    at = first_answering(0)
    while at is not None:
        link, planned = chain[at], plans[at]
        if planned.fault == "finish":
            parts.append(Part(link, planned, None))
            return Fate("stop", None, tuple(asked), tuple(parts))
        parts.append(Part(link, planned, FAILURE_CODE[planned.fault]))
        stalled = planned.fault == "stall"
        own = ("timeout", TIMEOUT_CODE) if stalled else ("error", FAILURE_CODE[planned.fault])
        limited = len(parts) - 1 >= max_switches
        if limited or at == len(chain) - 1:
            return Fate(*own, tuple(asked), tuple(parts), limited)
        at = first_answering(at + 1)
    return Fate("error", UNAVAILABLE, tuple(asked), tuple(parts))


def fate_of(seed: int, key: str, chain: Sequence[Link], max_switches: int) -> Fate:
    """The fate of the answer to ``key`` (every upstream's first request for it)."""
    return predict(chain, [plan(seed, link.upstream, key, 0) for link in chain], max_switches)


def continuation_body(key: str, shown: str, prefix: bool) -> dict[str, Any]:
    """The request a link gets for ``key`` after ``shown`` was shown (as the chaos upstream
    reads it: only the messages matter)."""
    messages: list[dict[str, Any]] = [{"role": "user", "content": key}]
    if shown:
        messages.append({"role": "assistant", "content": shown})
        if not prefix:
            messages.append({"role": "user", "content": f"{CONTINUE_MARKER} it stopped."})
    return {"messages": messages}


def reply_tokens(seed: int, key: str, shown: str, part: Part) -> list[str]:
    """The content deltas ``part``'s upstream replies with after ``shown``."""
    body = continuation_body(key, shown, part.link.prefix)
    return reply(seed, key, body, part.plan.repeat).tokens


def planned_count(tokens: Sequence[str], part: Part) -> int:
    """How many of ``tokens`` the upstream sends before its fault (all when it finishes)."""
    return len(tokens) if part.failure is None else min(part.plan.after, len(tokens))


def part_texts(
    seed: int,
    key: str,
    fate: Fate,
    delivered: Sequence[int | None] | None = None,
    *,
    held_shown: bool = False,
) -> list[str]:
    """The text each part adds to the answer, in order.

    ``delivered[i]``: how many deltas the gateway read of part ``i`` (None: as planned; a
    reset may lose some). ``held_shown``: a part that failed while the seam still held text
    back shows it (else it is dropped).
    """
    shown = ""
    texts: list[str] = []
    for index, part in enumerate(fate.parts):
        tokens = reply_tokens(seed, key, shown, part)
        count = planned_count(tokens, part)
        if delivered is not None and delivered[index] is not None:
            count = delivered[index] or 0
        added = seam_text(shown, tokens[:count], part, finished=part.failure is None or held_shown)
        texts.append(added)
        shown += added
    return texts


def seam_text(shown: str, tokens: Sequence[str], part: Part, *, finished: bool) -> str:
    """What ``tokens`` add after ``shown`` once the seam rule has had its say."""
    if not shown:
        return "".join(tokens)
    trimmer = SeamTrimmer(shown, fresh_start=not part.link.prefix)
    added = "".join(trimmer.feed(token) for token in tokens)
    return added + trimmer.finish() if finished else added


def short_repeat(fate: Fate, texts: Sequence[str]) -> int:
    """The index of the part asked by instruction that repeats one or two words of the text
    shown (kept: too short to be told from a genuine start), or -1."""
    shown = ""
    for index, (part, added) in enumerate(zip(fate.parts, texts, strict=True)):
        repeat = min(part.plan.repeat, len(shown.split()))
        if shown and not part.link.prefix and 0 < repeat < 3 and added:
            return index
        shown += added
    return -1


def anchor_text(seed: int, key: str, fate: Fate, texts: Sequence[str]) -> str | None:
    """The whole answer as written once, by rule of thumb rather than by the seam module:
    ``answer_text`` itself, or, when the last part kept a short repetition, the text shown
    before it, those repeated words after a space, and the rest of the answer (None when an
    earlier part kept one: the next upstream then meets a text it never wrote). A ``stop``
    answer must be exactly this; any other answer a beginning of it."""
    full = answer_text(seed, key)
    at = short_repeat(fate, texts)
    if at < 0:
        return full
    if at != len(fate.parts) - 1:
        return None
    shown = "".join(texts[:at])
    repeated = shown.split()[-min(fate.parts[at].plan.repeat, len(shown.split())) :]
    return shown + " " + " ".join(repeated) + full[len(shown) :]
