"""What a model backend is: an async iterator of text pieces, stopped by closing it.

Closing the iterator is the one way to stop a model, so "Stop generating"
means the same thing for every backend: the simulated model stops its clock,
an HTTP backend closes its upstream request (and the GPU stops billing).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from typewriter.events import ToolCall, Usage
from typewriter.messages import ChatMessage
from typewriter.models.health import UpstreamState

__all__ = [
    "Chunk",
    "Continuation",
    "GenerationOptions",
    "ModelBackend",
    "ModelRequest",
    "Simulation",
    "Source",
]


@dataclass(frozen=True, slots=True)
class Source:
    """Who is writing the answer from here on: an upstream, the model it was asked for, and
    its place in the backend's order of attempts (a continuation is asked of those after it).

    A backend that reaches upstreams yields a chunk carrying only this as soon as a response
    begins, before any of its pieces: the gateway then knows whom to continue from if that
    response fails before it sends anything.
    """

    upstream: str
    model: str
    index: int


@dataclass(frozen=True, slots=True)
class Chunk:
    """A piece of the answer; the last chunk carries ``finish_reason`` (and usage).

    Besides the answer's ``text`` a piece may carry the model's ``reasoning`` (its
    thinking, kept apart from the answer), fragments of the functions it calls
    (``tool_calls``, as streamed) and the ``logprobs`` of its text, as the upstream
    sent them.
    """

    text: str = ""
    finish_reason: str | None = None
    usage: Usage | None = None
    reasoning: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    logprobs: dict[str, Any] | None = None
    source: Source | None = None


@dataclass(frozen=True, slots=True)
class Simulation:
    """Per-request knobs of the simulated model (API.md §9)."""

    tokens_per_second: float | None = None
    first_token_delay_ms: float = 0.0
    fail_after_tokens: int | None = None
    stall_after_tokens: int | None = None
    timestamps: bool = False
    echo_history: bool = False


@dataclass(frozen=True, slots=True)
class GenerationOptions:
    """How to generate one answer.

    ``temperature``, ``top_p`` and ``max_tokens`` are typed because the assistant
    has defaults and bounds for them. ``max_tokens_name`` is the name the client
    gave the token limit: a model that only knows ``max_completion_tokens``
    refuses ``max_tokens``, so the upstream gets the client's own word.
    ``params`` are the other standard Chat Completions fields the client set
    (``stop``, ``seed``, ``response_format``, ``stream_options``, …), sent to
    every upstream as given; ``vendor`` are fields outside the standard, each
    upstream gets those its ``pass_fields`` names.
    """

    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    simulate: Simulation | None = None
    max_tokens_name: str = "max_tokens"
    params: Mapping[str, Any] = field(default_factory=dict)
    vendor: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ModelRequest:
    model: str
    messages: tuple[ChatMessage, ...]
    options: GenerationOptions = field(default_factory=GenerationOptions)


@dataclass(frozen=True, slots=True)
class Continuation:
    """Why and where an answer is to be continued: the source that failed, and how (a short
    code for the log and the stored parts: ``stall`` or the error's code)."""

    failed: Source
    failure: str


class ModelBackend(ABC):
    """A source of answers. Implementations must stop all work when the iterator is closed."""

    @property
    def name(self) -> str:
        """What the answer log calls this backend when no upstream request named one."""
        return type(self).__name__

    @abstractmethod
    def stream(self, request: ModelRequest) -> AsyncIterator[Chunk]:
        """Yield the answer's pieces in order, ending with a chunk that has ``finish_reason``."""

    def continue_answer(
        self, request: ModelRequest, partial: str, after: Continuation
    ) -> AsyncIterator[Chunk] | None:
        """The rest of an answer whose upstream failed after its response began, from the
        upstreams after ``after.failed`` (None when there is none to ask). ``partial`` is the
        text shown so far; the pieces yielded follow it without repeating its end. A model
        running in the process has no other upstream: None."""
        return None

    def passable_fields(self) -> frozenset[str]:
        """The vendor fields at least one of its upstreams accepts (``pass_fields``)."""
        return frozenset()

    async def check_upstreams(self) -> Sequence[UpstreamState]:
        """The state of each server this backend reaches, freshly checked if stale.

        For ``/readyz``'s body: a model running in the process has none.
        """
        return ()

    async def aclose(self) -> None:
        """Release connections."""
        return None
