"""What the chaos upstream does with each request: decided by a seed, never by arrival order.

Many answers run at once over several upstreams, so the order requests arrive in is not
reproducible; the schedule must not depend on it. A request is known by its **key**, the text
of its first user message (each answer of the chaos test asks its own question, e.g.
``"question 17"``; a continuation request repeats the conversation, so it has the same key),
and by its **attempt**, how many earlier requests with that key this upstream has seen. The
plan for ``(seed, upstream, key, attempt)`` comes from a ``random.Random`` seeded with those,
so the test computes, before asking anything, which answer meets which fault where.

The answer to a key is the same text on every upstream (its words are drawn from the seed and
the key), so an answer continued on another upstream can be checked word for word: the
listener must read exactly :func:`answer_text`. A continuation request (a final assistant
message, or one followed by the continuation instruction) gets the rest of that text after the
partial answer; asked by instruction, the reply starts as a fresh message does (no leading
space) and, as models do, first repeats the last ``repeat`` words of the partial answer.

Being imported both by the server (run as a script, by its plain name) and by tests (as
``upstream.chaos_schedule``), it imports nothing of its neighbours.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

FAULTS = ("finish", "status", "reset", "broken", "error", "garbage", "stall")
"""``finish``: the whole answer, finish reason, usage, ``[DONE]``. ``status``: a 503 before any
body (an HTTP status cannot change once a stream has started, so this is the only 5xx status).
Mid-stream, after ``after`` content chunks (0: only the role chunk): ``reset``, a TCP reset
(RST) that may lose unread data; ``broken``, the connection closed without the chunked body's
terminating chunk, everything sent being readable (a 5xx-ing proxy or a crashed worker);
``error``, an ``{"error": {...}}`` event and the response ended, as vLLM and OpenAI report a
failure mid-stream; ``garbage``, a data line that is not JSON and the response ended;
``stall``, nothing more, connection kept open, until the client leaves."""

VOCABULARY = (
    "the", "a", "of", "and", "to", "in", "it", "is", "on", "that", "river", "stone", "light",
    "slowly", "north", "garden", "winter", "clock", "paper", "bridge", "quiet", "long", "open",
    "small", "market", "road", "cold", "tea", "letter", "window", "moon", "train", "field",
)  # fmt: skip
CONTINUE_MARKER = "Continue exactly where"
"""How a continuation instruction is recognised (the gateway's instruction contains it)."""


@dataclass(frozen=True, slots=True)
class Plan:
    """One request's fate: ``fault`` (one of :data:`FAULTS`), after ``after`` content chunks;
    ``repeat``: words of the partial answer an instruction-style continuation repeats first."""

    fault: str
    after: int
    repeat: int


def answer_words(seed: int, key: str) -> list[str]:
    """The answer to ``key``: 12 to 40 words, the same on every upstream."""
    rng = random.Random(f"answer:{seed}:{key}")
    words = [rng.choice(VOCABULARY) for _ in range(rng.randint(12, 40))]
    words[0] = words[0].capitalize()
    words[-1] += "."
    return words


def answer_text(seed: int, key: str) -> str:
    return " ".join(answer_words(seed, key))


def plan(seed: int, upstream: str, key: str, attempt: int, faults: Sequence[str] = FAULTS) -> Plan:
    """The plan for one request (see the module's docstring); ``faults`` limits the choice,
    evenly weighted, e.g. to force one kind in a test."""
    rng = random.Random(f"plan:{seed}:{upstream}:{key}:{attempt}")
    # The point and the repetition first: they stay the same whatever ``faults`` allows.
    after = rng.randint(0, len(answer_words(seed, key)) - 1)
    repeat = rng.choice((0, 0, 1, 2, 3, 4, 6))
    return Plan(rng.choice(list(faults)), after, repeat)


def first_user_text(messages: Any) -> str:
    """The request's key: its first user message's text ("" if there is none)."""
    if not isinstance(messages, list):
        return ""
    for message in messages:
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):  # parts: their text
                return "".join(
                    p.get("text", "")
                    for p in content
                    if isinstance(p, dict) and p.get("type") == "text"
                )
    return ""


@dataclass(frozen=True, slots=True)
class Reply:
    """The content deltas a request gets, in order, and what it was continuing (None: a fresh
    request; otherwise the partial answer it was sent, ``style`` ``prefix`` or
    ``instruction``)."""

    tokens: list[str]
    partial: str | None = None
    style: str | None = None
    mismatch: bool = False


def reply(seed: int, key: str, body: dict[str, Any], repeat: int) -> Reply:
    """The deltas for a request: the answer to ``key``, or its rest after a partial answer."""
    words = answer_words(seed, key)
    full = " ".join(words)
    messages = body.get("messages")
    messages = messages if isinstance(messages, list) else []
    partial, style = _partial(messages)
    if partial is None:
        return Reply(_deltas(full))
    if not full.startswith(partial):
        return Reply(_deltas(full), partial, style, mismatch=True)
    rest = full[len(partial) :]
    if style == "prefix":
        return Reply(_deltas(rest), partial, style)
    # A fresh message: no leading space, and possibly a repetition of the partial's end.
    shown_words = partial.split()
    repeated = " ".join(shown_words[len(shown_words) - min(repeat, len(shown_words)) :])
    text = (repeated + rest) if repeated else rest.lstrip(" ")
    return Reply(_deltas(text), partial, style)


def _partial(messages: list[Any]) -> tuple[str | None, str | None]:
    """The partial answer a continuation request carries, and how it asks to continue."""
    dicts = [m for m in messages if isinstance(m, dict)]
    if len(dicts) >= 2 and dicts[-1].get("role") == "user" and dicts[-2].get("role") == "assistant":
        if CONTINUE_MARKER in str(dicts[-1].get("content")):
            return str(dicts[-2].get("content") or ""), "instruction"
    if dicts and dicts[-1].get("role") == "assistant":
        return str(dicts[-1].get("content") or ""), "prefix"
    return None, None


def _deltas(text: str) -> list[str]:
    """Text as a tokenizer streams it: each word with the space before it."""
    return re.findall(r"\s*\S+", text) or ([text] if text else [])
