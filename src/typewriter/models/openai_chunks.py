"""Reading an OpenAI-compatible upstream's event stream into answer chunks.

The bytes go through the project's own ``sse.Parser`` rather than an SSE
library, for two reasons. Its buffer is capped (the upstream's
``max_event_chars``): an upstream that sends one enormous event, or never ends
a line, ends the answer with ``upstream_event_too_large`` after at most that
many characters instead of growing the gateway's memory with it. And it splits
lines only on CR, LF and CRLF, so U+2028, U+2029 and NEL in a chunk's raw UTF-8
text stay text (a reader built on ``str.splitlines()`` would cut the JSON there).

Nothing here is retried: by the time a stream is read, the upstream has
answered, and every failure is an error of the answer (see ``openai.py``).

A chunk's delta may carry, besides ``content``, the model's thinking (as
``reasoning_content``, DeepSeek's and vLLM's name, or ``reasoning``,
OpenRouter's, newer vLLM's and Ollama's; one is read, never both) and fragments
of tool calls; its choice may carry ``logprobs``. Each is read into its own field
of the chunk. JSON may escape a character outside the BMP as a surrogate pair,
and a server that cuts text between tokens can send the two halves in two chunks:
a trailing high surrogate is held back and joined to the next piece of the same
text (:class:`_Pairs`), so text and arguments arrive exactly as the model wrote
them.

How the stream ends decides how the answer ends. The upstream's finish reason
is read into the contract's list (:func:`finish_reason_of`), so a client never
meets a reason it was not told about. ``[DONE]`` or a finish reason each mean
the upstream finished (some servers send one without the other); a stream that
closes with neither was cut somewhere on the way, and ends the answer with
``upstream_incomplete`` rather than looking complete.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any

import aiohttp

from typewriter import sse
from typewriter.errors import (
    ModelError,
    ModelTimeout,
    UpstreamEventTooLarge,
    UpstreamIncomplete,
)
from typewriter.events import ToolCall, Usage
from typewriter.models.base import Chunk

__all__ = ["error_message_of", "finish_reason_of", "read_chunks"]

log = logging.getLogger(__name__)

_DONE = "[DONE]"

_FINISH_REASONS = {
    # OpenAI's own, kept as they are (the contract's list has each of them).
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "content_filter": "content_filter",
    # Other servers' names for the same endings.
    "function_call": "tool_calls",  # OpenAI's older name, still sent by some servers
    "model_length": "length",  # Mistral: the context window was full
    "max_tokens": "length",  # servers translating Anthropic's ending
}
_FAILED = frozenset({"error", "abort"})
"""Reasons that say the upstream failed (Mistral's ``error``, vLLM's ``abort``): an error."""

_warned: set[str] = set()  # unknown reasons already logged: one WARNING each, not per answer
_WARN_MAX = 64


async def read_chunks(
    headers: Mapping[str, str], body: AsyncIterator[bytes], max_event_chars: int
) -> AsyncGenerator[Chunk, None]:
    """The answer's text chunks, then one chunk with its finish reason and usage.

    ``headers`` and ``body`` are the upstream response's: headers looked up by
    lower-case names (aiohttp's are case-insensitive), the body's pieces as they
    arrive, raising aiohttp's errors.
    Raises ModelError for anything that is not a well-formed stream of chunks (its
    code ``upstream_event_too_large`` when one event outgrows ``max_event_chars``),
    ModelTimeout when the upstream stops sending.
    """
    content_type = headers.get("content-type")
    # The media type must contain text/event-stream, as the SSE library read before did.
    if "text/event-stream" not in (content_type or "").partition(";")[0]:
        raise ModelError(f"the upstream answered {content_type!r}, not an event stream")
    coding = headers.get("content-encoding", "identity").strip().lower()
    if coding not in ("", "identity"):  # identity was asked for; bytes are read as sent
        raise ModelError(f"the upstream compressed its event stream ({coding[:40]!r})")
    finish_reason: str | None = None
    usage: Usage | None = None
    done = False
    pairs = _Pairs()
    try:
        async with contextlib.aclosing(_events(body, max_event_chars)) as events:
            async for event in events:
                if event.data == _DONE:
                    done = True
                    break
                payload = _parse(event.data)
                if "error" in payload:
                    message = error_message_of(payload)
                    raise ModelError(f"the upstream reported an error: {message}")
                # vLLM's continuous_usage_stats puts the running count on every chunk: it
                # rides with the text, so an answer ended early still has the exact count.
                running = _usage(payload["usage"]) if payload.get("usage") else None
                usage = running or usage
                for chunk, reason in _choices(payload, event.data, pairs, running):
                    if chunk is not None:
                        yield chunk
                    finish_reason = reason or finish_reason
    except sse.EventTooLarge:
        raise UpstreamEventTooLarge(
            f"the upstream sent an event over {max_event_chars} characters, its max_event_chars;"
            " the answer was ended"
        ) from None
    except aiohttp.ServerTimeoutError:  # first: it is a connection error too
        raise ModelTimeout("the upstream stopped sending") from None
    except aiohttp.ClientError as exc:  # its class is for the log (``OpenAIBackend.stream``)
        if finish_reason is None:
            raise ModelError("the connection to the model broke mid-answer") from exc
        # The model had said it was done: the text is whole, only the end of the body was lost.
        log.info("an upstream's connection broke after its finish reason (%s)", type(exc).__name__)
    if finish_reason is None and not done:
        raise UpstreamIncomplete(
            "the model's stream ended without a finish reason or [DONE]; the answer may be cut"
        )
    yield Chunk(finish_reason=finish_reason_of(finish_reason or "stop"), usage=usage)


def finish_reason_of(upstream_reason: str) -> str:
    """The contract's finish reason for an upstream's.

    ``stop``, ``length``, ``tool_calls`` and ``content_filter`` stay; a few other
    servers' names for those are translated; ``error`` and ``abort`` are the
    upstream's failure (ModelError). Any other reason is ``stop`` (the upstream
    did finish, in a way the contract has no name for), and the reason it gave
    goes to the log, once per reason.
    """
    reason = _FINISH_REASONS.get(upstream_reason)
    if reason is not None:
        return reason
    shown = upstream_reason[:40]
    if upstream_reason in _FAILED:
        raise ModelError(f"the model ended the answer with finish reason {shown!r}")
    if shown not in _warned and len(_warned) < _WARN_MAX:
        _warned.add(shown)
        log.warning("an upstream ended an answer with finish reason %r; it ends 'stop'", shown)
    return "stop"


async def _events(
    body: AsyncIterator[bytes], max_event_chars: int
) -> AsyncGenerator[sse.Event, None]:
    """Events as their blank lines arrive; an event the stream never finished is dropped."""
    parser = sse.Parser(max_event_chars)
    async for piece in body:
        try:
            dispatched = parser.feed(piece)
        except sse.EventTooLarge as too_large:
            for event in too_large.events:  # what came before it in the same read counts
                yield event
            raise
        for event in dispatched:
            yield event
    parser.close()


def error_message_of(payload: dict[str, Any]) -> str:
    """The message of OpenAI's error envelope ``{"error": {"message": …}}``, shortened."""
    error = payload.get("error")
    if isinstance(error, dict):
        return str(error.get("message") or error)[:300]
    return str(error)[:300]


def _parse(data: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError:
        raise ModelError(f"the upstream sent an invalid chunk: {data[:80]!r}") from None
    if not isinstance(value, dict):
        raise ModelError(f"the upstream sent an invalid chunk: {data[:80]!r}")
    return value


def _choices(
    payload: dict[str, Any], raw: str, pairs: _Pairs, usage: Usage | None
) -> list[tuple[Chunk | None, str | None]]:
    """Each choice's chunk (None when it says nothing) and finish reason; any other shape
    is the upstream's error."""
    out: list[tuple[Chunk | None, str | None]] = []
    try:
        for choice in payload.get("choices") or ():
            delta = choice.get("delta") or {}
            text = pairs.text("content", delta.get("content"))
            reasoning = delta.get("reasoning_content")
            if reasoning is None:
                reasoning = delta.get("reasoning")
            reasoning = pairs.text("reasoning", reasoning)
            calls = _tool_calls(delta.get("tool_calls"), pairs)
            reason = choice.get("finish_reason")
            chunk = None
            if text or reasoning or calls:
                logprobs = choice.get("logprobs")
                chunk = Chunk(
                    text,
                    None,
                    usage,
                    reasoning,
                    calls,
                    logprobs if isinstance(logprobs, dict) else None,
                )
            out.append((chunk, str(reason) if reason else None))
    except (AttributeError, TypeError, ValueError):
        raise ModelError(f"the upstream sent a chunk of an unknown shape: {raw[:80]!r}") from None
    return out


def _tool_calls(raw: Any, pairs: _Pairs) -> tuple[ToolCall, ...]:
    """The fragments of ``delta.tool_calls``, as sent: ``index`` (its place in the list
    when a server leaves it out), ``id`` and the function's ``name`` when given, and the
    ``arguments`` piece (``""`` when none)."""
    if not raw:
        return ()
    if not isinstance(raw, list):
        raise TypeError("tool_calls")
    calls = []
    for place, call in enumerate(raw):
        index = call.get("index", place)
        function = call.get("function") or {}
        call_id, name = call.get("id"), function.get("name")
        if type(index) is not int or index < 0:
            raise ValueError("tool call index")
        if not isinstance(call_id, str | None) or not isinstance(name, str | None):
            raise TypeError("tool call id or name")
        arguments = pairs.text(("tool", index), function.get("arguments"))
        calls.append(ToolCall(index, arguments, call_id, name))
    return tuple(calls)


class _Pairs:
    """Joins a surrogate pair cut between two pieces of the same text.

    ``json.loads`` turns ``"\\ud83d"`` into a lone surrogate, which cannot be
    encoded; when the next piece of that text starts with its low half, the two are
    one character. A trailing high surrogate is held until then; any other lone
    surrogate (one never completed) becomes U+FFFD, and one held when the stream ends
    is dropped, so the text can always be written as UTF-8.
    """

    __slots__ = ("_held",)

    def __init__(self) -> None:
        self._held: dict[object, str] = {}

    def text(self, key: object, value: Any) -> str:
        if not value:
            return ""
        if type(value) is not str:
            raise TypeError("text")
        if not self._held and value.isascii():  # most pieces: nothing to join or mend
            return value
        held = self._held.pop(key, None)
        if held is not None:
            value = held + value
        if "\ud800" <= value[-1] <= "\udbff":
            self._held[key] = value[-1]
            value = value[:-1]
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            value = value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        return str(value)


def _usage(raw: Any) -> Usage | None:
    with contextlib.suppress(TypeError, ValueError, AttributeError):
        return Usage.of(raw)
    return None
