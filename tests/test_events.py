"""The answer's events: one encoder and one decoder, and the exact JSON the contract shows."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from typewriter import events
from typewriter.events import Delta, End, Error, Start, Usage
from typewriter.jsonutil import dumps


def test_each_kind_encodes_its_fields_in_the_documented_order() -> None:
    start = Start("st_1", "conv_1", "msg_1", "echo", 1795300000)
    assert events.encode(start) == (
        '{"stream_id":"st_1","conversation_id":"conv_1","message_id":"msg_1",'
        '"model":"echo","created":1795300000}'
    )
    assert events.encode(Delta("你好\r\n")) == '{"text":"你好\\r\\n"}'
    assert events.encode(Error("timeout", "too slow")) == '{"code":"timeout","message":"too slow"}'
    assert events.encode(End("stop", "msg_1")) == '{"finish_reason":"stop","message_id":"msg_1"}'
    assert events.encode(events.Reasoning("hm")) == '{"text":"hm"}'
    assert events.encode(events.ToolCall(1, '{"a', "call_1", "f")) == (
        '{"index":1,"id":"call_1","name":"f","arguments":"{\\"a"}'
    )
    assert events.encode(events.ToolCall(1, 'b"}')) == '{"index":1,"arguments":"b\\"}"}'
    assert json.loads(events.encode(End("stop", "m", Usage(3, 4))))["usage"] == {
        "prompt_tokens": 3,
        "completion_tokens": 4,
        "total_tokens": 7,
    }


@pytest.mark.parametrize(
    "event",
    [
        Start("st_1", "conv_1", "msg_1", "default", 1),
        Delta(""),
        Delta("a\u2028b\x00c"),
        Error("upstream_error", "it broke"),
        End("length", "msg_2"),
        End("stop", "msg_3", Usage(10, 20)),
        Delta("a", {"content": [{"token": "a", "logprob": -0.5, "top_logprobs": []}]}),
        events.Reasoning("hm\n"),
        events.ToolCall(0, "", "call_1", "get_weather"),
        events.ToolCall(3, '{"a'),
    ],
)
def test_decode_gives_back_the_record(event: events.AnswerEvent) -> None:
    assert events.decode(event.name, events.encode(event)) == event


@given(st.text())
def test_any_text_survives_a_delta(text: str) -> None:
    encoded = events.encode(Delta(text))
    assert encoded == dumps({"text": text})  # the fast path writes what the encoder writes
    decoded = events.decode("delta", encoded)
    assert isinstance(decoded, Delta) and decoded.text == text


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("delta", "not json"),
        ("delta", "[1]"),
        ("delta", '{"txt": "a"}'),
        ("delta", '{"text": 3}'),
        ("start", '{"stream_id": "s"}'),
        ("end", "{}"),
        ("thought", '{"text": "a"}'),
        ("reasoning", '{"text": null}'),
        ("tool_call", '{"arguments": "{"}'),
        ("tool_call", '{"index": "0", "arguments": ""}'),
        ("tool_call", '{"index": 0, "arguments": "", "name": 5}'),
    ],
)
def test_what_is_not_an_event_is_refused(name: str, data: str) -> None:
    with pytest.raises(events.EventDecodeError):
        events.decode(name, data)


def test_records_are_frozen() -> None:
    delta = Delta("a")
    with pytest.raises(AttributeError):
        delta.text = "b"  # type: ignore[misc]


def test_the_channel_leads_with_stream_and_number_and_says_each_key_once() -> None:
    start = events.encode(Start("st_9", "conv_1", "msg_1", "echo", 5))
    data = events.channel_data("st_9", 1, "start", start)
    assert data.count('"stream_id"') == 1
    assert data.startswith('{"stream_id":"st_9","seq":1,')
    assert json.loads(data) == {
        "stream_id": "st_9",
        "seq": 1,
        "conversation_id": "conv_1",
        "message_id": "msg_1",
        "model": "echo",
        "created": 5,
    }
    delta = events.channel_data("st_9", 2, "delta", events.encode(Delta("hi")))
    assert delta == '{"stream_id":"st_9","seq":2,"text":"hi"}'


@given(st.text(), st.integers(min_value=1, max_value=10**9), st.sampled_from(["d", "s", "e"]))
def test_the_channel_says_what_decoding_and_writing_again_would(
    text: str, seq: int, kind: str
) -> None:
    record: events.AnswerEvent = {
        "d": Delta(text),
        "s": Start("st_" + str(seq), text, "msg_1", "echo", seq),
        "e": Error("upstream_error", text),
    }[kind]
    stream_id = record.stream_id if isinstance(record, Start) else "st_x"
    fields = record.fields()
    fields.pop("stream_id", None)
    expected = dumps({"stream_id": stream_id, "seq": seq, **fields})
    assert events.channel_data(stream_id, seq, record.name, events.encode(record)) == expected
