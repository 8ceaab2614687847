"""How a stream's events read to an OpenAI client: reasoning as ``reasoning_content``,
tool-call fragments one for one in OpenAI's streamed form, logprobs with their piece; and,
not streamed, all of it gathered into the message."""

from __future__ import annotations

import json
from typing import Any

from typewriter.api.openai_completion import Completion
from typewriter.events import AnswerEvent, Delta, End, Reasoning, Start, ToolCall, Usage, encode

LOGPROBS = {"content": [{"token": "Hi", "logprob": -0.1, "bytes": [72, 105], "top_logprobs": []}]}
EVENTS: list[AnswerEvent] = [
    Start("st_1", "conv_1", "msg_1", "m", 1),
    Reasoning("Let me "),
    Reasoning("think."),
    Delta("Hi", LOGPROBS),
    ToolCall(0, "", "call_a", "get_weather"),
    ToolCall(1, "", "call_b", "get_time"),
    ToolCall(0, '{"city": "Pa'),
    ToolCall(1, "{}"),
    ToolCall(0, 'ris"}'),
    End("tool_calls", "msg_1", Usage(5, 7)),
]


def chunks(wire: bytes) -> list[Any]:
    return [json.loads(b[6:]) for b in wire.split(b"\n\n") if b and b != b"data: [DONE]"]


def test_streamed_events_become_openai_deltas() -> None:
    completion = Completion("msg_1", "m", include_usage=False)
    wire = b"".join(completion.translate(e) for e in EVENTS)
    assert wire.endswith(b"data: [DONE]\n\n")
    choices = [c["choices"][0] for c in chunks(wire)]
    assert [c["delta"] for c in choices] == [
        {"reasoning_content": "Let me "},
        {"reasoning_content": "think."},
        {"content": "Hi"},
        {"tool_calls": [{"index": 0, "id": "call_a", "type": "function",
                         "function": {"name": "get_weather", "arguments": ""}}]},
        {"tool_calls": [{"index": 1, "id": "call_b", "type": "function",
                         "function": {"name": "get_time", "arguments": ""}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"city": "Pa'}}]},
        {"tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": 'ris"}'}}]},
        {},
    ]  # fmt: skip
    assert choices[2]["logprobs"] == LOGPROBS
    assert choices[-1]["finish_reason"] == "tool_calls"


def test_an_unstreamed_answer_gathers_reasoning_calls_and_logprobs() -> None:
    completion = Completion("msg_1", "m", include_usage=False)
    text = "".join(completion.apply(e) for e in EVENTS)
    body = completion.completion(text)
    choice = body["choices"][0]
    assert choice["message"] == {
        "role": "assistant",
        "content": "Hi",
        "refusal": None,
        "reasoning_content": "Let me think.",
        "tool_calls": [
            {"id": "call_a", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
            {"id": "call_b", "type": "function",
             "function": {"name": "get_time", "arguments": "{}"}},
        ],
    }  # fmt: skip
    assert choice["logprobs"] == LOGPROBS
    assert choice["finish_reason"] == "tool_calls"


def test_calls_without_text_have_null_content() -> None:
    completion = Completion("msg_1", "m", include_usage=False)
    for event in (ToolCall(0, "{}", "c", "f"), End("tool_calls", "msg_1")):
        completion.apply(event)
    message = completion.completion("")["choices"][0]["message"]
    assert message["content"] is None and "reasoning_content" not in message
    plain = Completion("msg_1", "m", include_usage=False)
    plain.apply(End("stop", "msg_1"))
    assert plain.completion("")["choices"][0]["message"]["content"] == ""


TEXTS = [
    "Hi",
    "",
    'say "}"',
    "back\\",
    "line\nnext\ttab",
    "中文 ✓ 🎉",
    "\u2028\x00\x1f",
    '{"text":"x"}',
]


def test_a_plain_delta_passes_as_bytes_and_reads_as_its_translation() -> None:
    for include_usage in (False, True):
        streamed = Completion("msg_1", "m", include_usage, gather=False)
        for text in TEXTS:
            data = encode(Delta(text))
            assert streamed.plain_delta(data) == streamed.translate(Delta(text)), text
    streamed = Completion("msg_1", "m", include_usage=False, gather=False)
    assert streamed.plain_delta(encode(Delta("Hi", LOGPROBS))) is None  # translated instead
    gathered = Completion("msg_1", "m", include_usage=False)
    assert gathered.plain_delta(encode(Delta("Hi"))) is None  # its logprobs are gathered
