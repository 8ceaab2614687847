"""OpenAI's Chat Completions answer: the chunks and the body a client reads.

How typewriter's endings read to an OpenAI client (:class:`Completion`):

- ``stop`` → ``stop``; ``length`` → ``length``; ``tool_calls`` and
  ``content_filter`` as they are; ``cancelled`` (someone pressed Stop, e.g.
  ``POST /v1/streams/{id}/cancel``) → ``stop``: the partial answer is the
  answer, and OpenAI has no "cancelled" that its clients would understand.
- ``error`` / ``timeout`` → an error, also when some text came first: a client
  could not tell a cut answer from a whole one otherwise (the partial text stays
  readable through the stream). Streamed: ``data: {"error": …}`` then
  ``data: [DONE]``, as OpenAI and vLLM do once the status is already 200. Not
  streamed: the status of the ``error`` event's code (502, 503 or 504).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from typewriter.errors import ModelError
from typewriter.events import AnswerEvent, Delta, End, Error, Reasoning, ToolCall
from typewriter.jsonutil import dumps

from .openai_errors import openai_error

__all__ = ["DONE", "Completion", "sse_data", "tool_call_fragment"]

_FINISH = {
    "stop": "stop",
    "length": "length",
    "cancelled": "stop",
    "tool_calls": "tool_calls",
    "content_filter": "content_filter",
}


def _model_errors(kind: type[ModelError] = ModelError) -> Iterator[type[ModelError]]:
    """The model's error classes, the whole subtree: a new one needs no entry here."""
    yield kind
    for sub in kind.__subclasses__():
        yield from _model_errors(sub)


_ERROR_STATUS = {c.code: c.status for c in _model_errors()}
_ERROR_STATUS["interrupted"] = 503  # the server shut down mid-answer: ask again
DONE = b"data: [DONE]\n\n"


def sse_data(value: Any) -> bytes:
    return b"data: " + dumps(value).encode() + b"\n\n"


def _error(code: str, message: str) -> tuple[int, dict[str, Any]]:
    status = _ERROR_STATUS.get(code, 500)
    return openai_error(status, {"error": {"code": code, "message": message}})


class Completion:
    """One answer through OpenAI's eyes: fed the stream's events in order, it knows
    how the answer ended and writes the chunks and bodies that say so.

    Besides the text it relays the model's reasoning (``reasoning_content``, the
    name DeepSeek's API and vLLM gave it and clients read), tool-call fragments one
    for one as the upstream streamed them, and the ``logprobs`` of each piece. For a
    response that is not streamed it gathers them: the reasoning joined, each call's
    fragments joined by ``index``, the logprobs' ``content`` lists one after another
    (``gather``: only then, a streamed answer keeps none of it).
    """

    def __init__(
        self, message_id: str, model: str, include_usage: bool, *, gather: bool = True
    ) -> None:
        self.id = "chatcmpl-" + message_id.removeprefix("msg_")  # ties it to the stored message
        self.created = int(time.time())
        self.model = model
        self.include_usage = include_usage
        self.ended = False
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] | None = None
        self.error: tuple[int, dict[str, Any]] | None = None  # (status, OpenAI error body)
        self.gather = gather
        # A plain delta's chunk is this head, the text's JSON string, and this tail
        # (``plain_delta``): the same bytes as ``chunk``, without decoding the event
        # and encoding the chunk again.
        head, _, tail = self.chunk({"content": ""}).decode().partition('""')
        self._delta_head = head.encode()
        self._delta_tail = tail.encode()
        self._reasoning: list[str] = []
        self._calls: dict[int, _Call] = {}
        self._logprobs: list[Any] | None = None

    def apply(self, event: AnswerEvent) -> str:
        """Take one event in; return the text it adds to the answer."""
        if isinstance(event, Delta):
            if event.logprobs is not None and self.gather:
                self._gather_logprobs(event.logprobs)
            return event.text
        if isinstance(event, Reasoning):
            if self.gather:
                self._reasoning.append(event.text)
        elif isinstance(event, ToolCall):
            if self.gather:
                self._calls.setdefault(event.index, _Call()).add(event)
        elif isinstance(event, Error):
            self.error = _error(event.code, event.message)
        elif isinstance(event, End):
            self.ended = True
            self.usage = event.usage.to_dict() if event.usage is not None else None
            self.finish_reason = _FINISH.get(event.finish_reason)
            if self.finish_reason is None and self.error is None:
                self.error = _error("upstream_error", f"the answer ended {event.finish_reason!r}")
        return ""

    def _gather_logprobs(self, logprobs: dict[str, Any]) -> None:
        content = logprobs.get("content")
        if isinstance(content, list):
            if self._logprobs is None:
                self._logprobs = []
            self._logprobs.extend(content)

    def _envelope(self, kind: str, **fields: Any) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": kind,
            "created": self.created,
            "model": self.model,
            **fields,
        }

    def chunk(
        self,
        delta: dict[str, Any],
        finish_reason: str | None = None,
        logprobs: dict[str, Any] | None = None,
    ) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}
        extra = {"usage": None} if self.include_usage else {}
        return sse_data(self._envelope("chat.completion.chunk", choices=[choice], **extra))

    def plain_delta(self, data: str) -> bytes | None:
        """The chunk of a delta event from its ``data`` as the stream holds it, when that
        is a delta without logprobs (``{"text":"…"}``, as ``events.encode`` writes one:
        with logprobs it ends ``}}``); None for any other, which ``translate`` takes.

        This is the relay's hot path, one call per token: the text's JSON string goes
        from the stream's bytes to the client's as it is. Only for a streamed answer
        (``gather`` off): a gathered one reads every event.
        """
        if self.gather or not (data.startswith('{"text":"') and data.endswith('"}')):
            return None
        return self._delta_head + data[8:-1].encode() + self._delta_tail

    def translate(self, event: AnswerEvent) -> bytes:
        """The SSE bytes an OpenAI client gets for one typewriter event."""
        text = self.apply(event)
        if isinstance(event, Delta):
            return self.chunk({"content": text}, logprobs=event.logprobs)
        if isinstance(event, Reasoning):
            return self.chunk({"reasoning_content": event.text})
        if isinstance(event, ToolCall):
            return self.chunk({"tool_calls": [tool_call_fragment(event)]})
        if not isinstance(event, End):
            return b""  # start: the role chunk opened the response; error: sent with end
        usage = b""
        if self.include_usage:
            usage = sse_data(self._envelope("chat.completion.chunk", choices=[], usage=self.usage))
        if self.error is not None:
            # What the failed answer cost comes first: after the error a client stops reading.
            return (usage if self.usage is not None else b"") + sse_data(self.error[1]) + DONE
        return self.chunk({}, self.finish_reason) + usage + DONE

    def interrupted(self) -> tuple[int, dict[str, Any]]:
        return _error("interrupted", "the server is shutting down; ask again")

    def completion(self, text: str) -> dict[str, Any]:
        calls = [self._calls[index].body() for index in sorted(self._calls)]
        message: dict[str, Any] = {
            "role": "assistant",
            "content": text if text or not calls else None,
            "refusal": None,
        }
        if self._reasoning:
            message["reasoning_content"] = "".join(self._reasoning)
        if calls:
            message["tool_calls"] = calls
        logprobs = {"content": self._logprobs} if self._logprobs is not None else None
        choice = {
            "index": 0,
            "message": message,
            "logprobs": logprobs,
            "finish_reason": self.finish_reason,
        }
        return self._envelope("chat.completion", choices=[choice], usage=self.usage)


class _Call:
    """One call's fragments, gathered for a response that is not streamed."""

    __slots__ = ("id", "names", "arguments")

    def __init__(self) -> None:
        self.id = ""
        self.names: list[str] = []
        self.arguments: list[str] = []

    def add(self, fragment: ToolCall) -> None:
        if fragment.id is not None:
            self.id = fragment.id
        if fragment.function is not None:
            self.names.append(fragment.function)
        self.arguments.append(fragment.arguments)

    def body(self) -> dict[str, Any]:
        function = {"name": "".join(self.names), "arguments": "".join(self.arguments)}
        return {"id": self.id, "type": "function", "function": function}


def tool_call_fragment(call: ToolCall) -> dict[str, Any]:
    """A fragment in OpenAI's streamed form: ``id`` and ``type`` with the call's first
    fragment, ``function.name`` when given, and its piece of ``arguments``."""
    fragment: dict[str, Any] = {"index": call.index}
    if call.id is not None:
        fragment["id"] = call.id
        fragment["type"] = "function"
    function: dict[str, Any] = {}
    if call.function is not None:
        function["name"] = call.function
    function["arguments"] = call.arguments
    fragment["function"] = function
    return fragment
