"""The answer's events as typed records: one encoder, one decoder.

An answer is a stream of events — ``start``, then ``reasoning`` (the model's
thinking, when it shows it), ``delta`` (the answer's text), ``tool_call``
(pieces of the functions it calls) and ``notice`` (another upstream took the
answer over), then ``error`` if it failed and ``end`` —
and this module is the only place that knows their fields and their
JSON. Producers (the use case) build records; consumers (the OpenAI
translation, orphan recovery, the Python client, the tests) decode records;
JSON text appears only at the edge, in the stream's log and on the wire.

Each record is a frozen, slotted dataclass, checked once when built, in the
manner of h11's events: a record that exists is a valid one. A new kind of
event is one more class here and one more line in ``_KINDS``.

The stream's log keeps ``(seq, name, data, wire)`` tuples, not these records:
tuples of strings are untracked by the cyclic garbage collector, which is what
keeps full collections short while millions of events are retained (see
docs/benchmarks.md). A record is what is built and read; the tuple is what is
kept.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from json.encoder import encode_basestring as _json_string
from typing import Any, ClassVar, TypeAlias

from typewriter.jsonutil import dumps

__all__ = [
    "AnswerEvent",
    "KINDS",
    "Delta",
    "Notice",
    "Reasoning",
    "Reset",
    "End",
    "ToolCall",
    "Error",
    "EventDecodeError",
    "Start",
    "TERMINAL",
    "Usage",
    "channel_data",
    "decode",
    "encode",
]

TERMINAL = "end"
"""The name of the event that ends every stream; nothing is appended after it."""


class EventDecodeError(ValueError):
    """Event data that is not the JSON of its kind (an unknown kind, a missing field)."""


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens for one answer; ``total_tokens`` is always their sum.

    ``estimated`` is true when the model did not count them and the gateway did
    (``token_estimate``): an answer ended early by an upstream that counts only at
    the end. It is written only when true, so exact usage keeps OpenAI's shape.
    """

    prompt_tokens: int
    completion_tokens: int
    estimated: bool = False

    @classmethod
    def of(cls, fields: dict[str, Any]) -> Usage:
        """From OpenAI's ``usage`` object (``total_tokens`` is recomputed, not trusted)."""
        return cls(
            int(fields.get("prompt_tokens", 0)),
            int(fields.get("completion_tokens", 0)),
            fields.get("estimated") is True,
        )

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }
        if self.estimated:
            body["estimated"] = True
        return body


@dataclass(frozen=True, slots=True)
class Start:
    """The first event: which stream, conversation and message this answer is."""

    name: ClassVar[str] = "start"
    stream_id: str
    conversation_id: str
    message_id: str
    model: str
    created: int

    def fields(self) -> dict[str, Any]:
        return {
            "stream_id": self.stream_id,
            "conversation_id": self.conversation_id,
            "message_id": self.message_id,
            "model": self.model,
            "created": self.created,
        }


@dataclass(frozen=True, slots=True)
class Delta:
    """A piece of the answer's text; the deltas concatenated are the answer.

    ``logprobs`` is the upstream's ``logprobs`` object for this piece, as it sent it
    (``{"content": [{"token", "logprob", "bytes", "top_logprobs"}]}``), when the
    client asked for them: relayed, not interpreted.
    """

    name: ClassVar[str] = "delta"
    text: str
    logprobs: dict[str, Any] | None = None

    def fields(self) -> dict[str, Any]:
        if self.logprobs is None:
            return {"text": self.text}
        return {"text": self.text, "logprobs": self.logprobs}


@dataclass(frozen=True, slots=True)
class Reasoning:
    """A piece of the model's reasoning: apart from the answer's text, stored apart from
    it, and never sent back to the model as history."""

    name: ClassVar[str] = "reasoning"
    text: str

    def fields(self) -> dict[str, Any]:
        return {"text": self.text}


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One fragment of a function call, as the upstream streamed it.

    The fragments of call ``index`` concatenated are the call: the first one has its
    ``id`` and ``name``, the others only more ``arguments`` (a JSON text cut
    anywhere). They are relayed one for one, never reassembled, so a client's own
    accumulation (the OpenAI SDK's) meets exactly what the model sent.
    """

    name: ClassVar[str] = "tool_call"
    index: int
    arguments: str = ""
    id: str | None = None
    function: str | None = None

    def fields(self) -> dict[str, Any]:
        body: dict[str, Any] = {"index": self.index}
        if self.id is not None:
            body["id"] = self.id
        if self.function is not None:
            body["name"] = self.function
        body["arguments"] = self.arguments
        return body


@dataclass(frozen=True, slots=True)
class Error:
    """Why the answer failed; ``end`` follows. ``code`` is the error's stable name."""

    name: ClassVar[str] = "error"
    code: str
    message: str

    def fields(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message}


@dataclass(frozen=True, slots=True)
class Notice:
    """Something the listener may want to know mid-answer, that is not the answer.

    ``failover``: the upstream ``from_`` failed and ``to`` (asked for ``model``) continues
    the answer from here: the text goes on after this event as one answer.
    """

    name: ClassVar[str] = "notice"
    code: str
    from_: str
    to: str
    model: str

    def fields(self) -> dict[str, Any]:
        return {"code": self.code, "from": self.from_, "to": self.to, "model": self.model}


@dataclass(frozen=True, slots=True)
class End:
    """The last event: how the answer ended, and what it cost when the model said."""

    name: ClassVar[str] = TERMINAL
    finish_reason: str
    message_id: str
    usage: Usage | None = None

    def fields(self) -> dict[str, Any]:
        body: dict[str, Any] = {"finish_reason": self.finish_reason, "message_id": self.message_id}
        if self.usage is not None:
            body["usage"] = self.usage.to_dict()
        return body


AnswerEvent: TypeAlias = Start | Delta | Reasoning | ToolCall | Notice | Error | End


@dataclass(frozen=True, slots=True)
class Reset:
    """A channel event, never a stream's: the listener's position moved to ``cursor`` without
    the events before it (they were lost with Redis's data, or are older than the window the
    channel keeps). The client reloads its state (conversations, the open one), then goes on.

    ``reason`` says which: ``epoch`` (the channel's history is from another incarnation)
    or ``window`` (the listener fell behind the kept window).
    """

    name: ClassVar[str] = "reset"
    cursor: str
    reason: str

    def fields(self) -> dict[str, Any]:
        return {"cursor": self.cursor, "reason": self.reason}


def encode(event: AnswerEvent | Reset) -> str:
    """The event's ``data``: compact JSON, UTF-8 as is, fields in their documented order.

    A delta (one per token, the hot path) is written around the JSON string encoder
    itself: the same text ``dumps`` gives (a test holds them equal), in a third of the
    time of encoding a one-key dict, which pays for building the record.
    """
    if type(event) is Delta and event.logprobs is None:
        return '{"text":' + _json_string(event.text) + "}"
    return dumps(event.fields())


def decode(name: str, data: str) -> AnswerEvent:
    """The record of one event, from its name and its ``data``; EventDecodeError if it is not
    one of the kinds above or lacks a field."""
    try:
        fields = json.loads(data)
    except ValueError as exc:
        raise EventDecodeError(f"{name} event data is not JSON: {data[:80]!r}") from exc
    if not isinstance(fields, dict):
        raise EventDecodeError(f"{name} event data is not a JSON object: {data[:80]!r}")
    parse = _KINDS.get(name)
    if parse is None:
        raise EventDecodeError(f"unknown event {name[:40]!r}")
    try:
        return parse(fields)
    except (KeyError, TypeError, ValueError) as exc:
        raise EventDecodeError(f"{name} event data lacks {exc}: {data[:80]!r}") from None


def channel_data(stream_id: str, seq: int, name: str, data: str) -> str:
    """An event as the user's channel carries it: its fields, led by ``stream_id`` and ``seq``
    (the stream it belongs to and its number there).

    Made per channel listener per event, so the JSON this module wrote is extended in
    place rather than decoded and written again (1.6 µs against 12 µs an event): a
    start drops its own leading ``stream_id`` (the key is said once), any other event
    gets the two keys in front. Data of any other form goes through the decoder.
    """
    head = '{"stream_id":' + _json_string(stream_id) + ',"seq":' + str(seq)
    if name == Start.name:
        own = '{"stream_id":' + _json_string(stream_id) + ","
        if data.startswith(own):
            return head + "," + data[len(own) :]
    elif data.startswith('{"'):
        return head + "," + data[1:]
    fields = decode(name, data).fields()
    fields.pop("stream_id", None)
    return dumps({"stream_id": stream_id, "seq": seq, **fields})


def _start(fields: dict[str, Any]) -> Start:
    return Start(
        str(fields["stream_id"]),
        str(fields["conversation_id"]),
        str(fields["message_id"]),
        str(fields["model"]),
        int(fields["created"]),
    )


def _delta(fields: dict[str, Any]) -> Delta:
    logprobs = fields.get("logprobs")
    return Delta(_text(fields), logprobs if isinstance(logprobs, dict) else None)


def _reasoning(fields: dict[str, Any]) -> Reasoning:
    return Reasoning(_text(fields))


def _tool_call(fields: dict[str, Any]) -> ToolCall:
    index, arguments = fields["index"], fields.get("arguments", "")
    call_id, function = fields.get("id"), fields.get("name")
    if type(index) is not int or not isinstance(arguments, str):
        raise TypeError("index or arguments")
    if not isinstance(call_id, str | None) or not isinstance(function, str | None):
        raise TypeError("id or name")
    return ToolCall(index, arguments, call_id, function)


def _text(fields: dict[str, Any]) -> str:
    text = fields["text"]
    if not isinstance(text, str):
        raise TypeError("text")
    return text


def _error(fields: dict[str, Any]) -> Error:
    return Error(str(fields["code"]), str(fields["message"]))


def _notice(fields: dict[str, Any]) -> Notice:
    return Notice(str(fields["code"]), str(fields["from"]), str(fields["to"]), str(fields["model"]))


def _end(fields: dict[str, Any]) -> End:
    raw = fields.get("usage")
    usage = Usage.of(raw) if isinstance(raw, dict) else None
    return End(str(fields["finish_reason"]), str(fields.get("message_id", "")), usage)


_KINDS: dict[str, Callable[[dict[str, Any]], AnswerEvent]] = {
    Start.name: _start,
    Delta.name: _delta,
    Reasoning.name: _reasoning,
    ToolCall.name: _tool_call,
    Notice.name: _notice,
    Error.name: _error,
    End.name: _end,
}

KINDS = frozenset(_KINDS)
"""The names of the answer's events: what :func:`decode` reads."""
