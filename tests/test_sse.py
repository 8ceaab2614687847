"""Tests for typewriter.sse: the WHATWG examples, chunking, limits and round trips."""

from __future__ import annotations

import json
import re
import tracemalloc
from collections.abc import Iterator

import httpx
import pytest
from httpx_sse import EventSource
from hypothesis import given
from hypothesis import strategies as st

from typewriter.sse import (
    Event,
    EventTooLarge,
    Parser,
    ProtocolError,
    encode,
    encode_comment,
    encode_retry,
)


def parse_chunks(chunks: list[bytes], **kwargs: int) -> list[Event]:
    parser = Parser(**kwargs)
    events: list[Event] = []
    for chunk in chunks:
        events.extend(parser.feed(chunk))
    events.extend(parser.close())
    return events


def parse(wire: bytes) -> list[Event]:
    return parse_chunks([wire])


def cut(wire: bytes, points: list[int]) -> list[bytes]:
    bounds = [0, *sorted(points), len(wire)]
    return [wire[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


def all_chunkings(wire: bytes) -> Iterator[tuple[str, list[bytes]]]:
    yield "whole", [wire]
    yield "bytewise", [wire[i : i + 1] for i in range(len(wire))]
    for i in range(len(wire) + 1):
        yield f"cut at {i}", cut(wire, [i])


def normalize_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


# (name, wire, expected events) — the first five are the spec's own examples.
CASES: list[tuple[str, bytes, list[Event]]] = [
    (
        "spec: stock ticker, multi-line data",
        b"data: YHOO\ndata: +2\ndata: 10\n\n",
        [Event("YHOO\n+2\n10")],
    ),
    (
        "spec: comment, ids, empty id, two leading spaces",
        b": test stream\n\ndata: first event\nid: 1\n\n"
        b"data:second event\nid\n\ndata:  third event\n",
        [Event("first event", id="1"), Event("second event", id="")],
    ),
    (
        "spec: data without colon gives empty strings, trailing block dropped",
        b"data\n\ndata\ndata\n\ndata:",
        [Event(""), Event("\n")],
    ),
    (
        "spec: space after colon is optional",
        b"data:test\n\ndata: test\n\n",
        [Event("test"), Event("test")],
    ),
    (
        "spec: event types",
        b"event: add\ndata: 73857293\n\nevent: remove\ndata: 2153\n\nevent: add\ndata: 113411\n\n",
        [Event("73857293", "add"), Event("2153", "remove"), Event("113411", "add")],
    ),
    ("leading BOM skipped", b"\xef\xbb\xbfdata: x\n\n", [Event("x")]),
    # The second BOM becomes part of the field name "\ufeffdata": unknown, ignored.
    ("only one BOM skipped", b"\xef\xbb\xbf\xef\xbb\xbfdata: x\n\ndata: y\n\n", [Event("y")]),
    ("BOM after the start is data", b"data: \xef\xbb\xbfx\n\n", [Event("\ufeffx")]),
    ("CR line ends", b"data: a\rdata: b\r\rdata: c\r\r", [Event("a\nb"), Event("c")]),
    ("CRLF line ends", b"data: a\r\ndata: b\r\n\r\n", [Event("a\nb")]),
    ("mixed line ends", b"data: a\r\ndata: b\rdata: c\n\r\n", [Event("a\nb\nc")]),
    ("CR CR is two line ends", b"data: a\r\rdata: b\r\n\n", [Event("a"), Event("b")]),
    (
        "splitlines characters are not line ends",
        "data: a\x0bb\x0cc\x1cd\x1de\x1ef\x85g\u2028h\u2029i\n\n".encode(),
        [Event("a\x0bb\x0cc\x1cd\x1de\x1ef\x85g\u2028h\u2029i")],
    ),
    ("multi-byte UTF-8", "data: é😀中\n\n".encode(), [Event("é😀中")]),
    ("invalid UTF-8 replaced", b"data: a\xffb\xc3\n\n", [Event("a\ufffdb\ufffd")]),
    ("comments ignored", b": hi\ndata: a\n: there\ndata: b\n:\n\n", [Event("a\nb")]),
    ("unknown fields ignored", b"foo: bar\nDATA: x\ndata: y\nbaz\n\n", [Event("y")]),
    ("event without data not dispatched", b"event: x\nid: 3\n\ndata: y\n\n", [Event("y")]),
    ("event type reset after blank", b"event: x\n\ndata: y\n\n", [Event("y")]),
    ("colon in value kept", b"data: a: b\nevent: c:d\n\n", [Event("a: b", "c:d")]),
    ("only one space stripped", b"data:   x \n\n", [Event("  x ")]),
    ("NUL in data kept", b"data: a\x00b\n\n", [Event("a\x00b")]),
    (
        "id with NUL ignored",
        b"id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n",
        [
            Event("a", id="1"),
            Event("b"),
        ],
    ),
    (
        "retry validation",
        "retry: 12a\ndata: a\n\nretry: -1\ndata: b\n\nretry: １２\ndata: c\n\n"
        "retry: \ndata: d\n\nretry: 3000\ndata: e\n\nretry:007\ndata: f\n\n".encode(),
        [
            Event("a"),
            Event("b"),
            Event("c"),
            Event("d"),
            Event("e", retry=3000),
            Event("f", retry=7),
        ],
    ),
    ("retry-only block", b"retry: 10\n\ndata: x\n\n", [Event("x")]),
    ("incomplete event dropped", b"data: a\n\ndata: b\n", [Event("a")]),
    ("incomplete line dropped", b"data: a\n\ndata: b", [Event("a")]),
]


@pytest.mark.parametrize(("wire", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_cases_every_chunking(wire: bytes, expected: list[Event]) -> None:
    for how, chunks in all_chunkings(wire):
        assert parse_chunks(chunks) == expected, how


def test_last_event_id_persists_and_resets() -> None:
    parser = Parser()
    assert parser.last_event_id == ""
    assert parser.feed(b"id: 7\ndata: a\n\n") == [Event("a", id="7")]
    assert parser.feed(b"data: b\n\n") == [Event("b")]
    assert parser.last_event_id == "7"
    parser.feed(b"id: 8\x009\ndata: c\n\n")
    assert parser.last_event_id == "7"
    parser.feed(b"id\ndata: d\n\n")
    assert parser.last_event_id == ""


def test_retry_only_block_sets_parser_retry() -> None:
    parser = Parser()
    assert parser.retry is None
    assert parser.feed(encode_retry(3000)) == []
    assert parser.retry == 3000
    for bad in (b"12a", b"-1", "１２".encode(), b"", b" 5", b"1.5", b"\xc2\xb2"):
        assert parser.feed(b"retry: " + bad + b"\n\n") == []
        assert parser.retry == 3000, bad
    assert parser.feed(b"retry: 0\ndata: x\n\n") == [Event("x", retry=0)]
    assert parser.retry == 0
    assert parser.feed(b"retry: " + b"9" * 5000 + b"\n\n") == []  # over int()'s limit
    assert parser.retry == 0


def test_crlf_split_across_chunks_is_one_line_end() -> None:
    parser = Parser()
    assert parser.feed(b"data: a\r") == []
    assert parser.feed(b"\ndata: b\r") == []
    assert parser.feed(b"\n\r") == [Event("a\nb")]
    assert parser.feed(b"\ndata: c\n\n") == [Event("c")]


def test_cr_dispatches_without_waiting_for_next_chunk() -> None:
    parser = Parser()
    assert parser.feed(b"data: a\r\r") == [Event("a")]
    assert parser.feed(b"data: b\n\r") == [Event("b")]


def test_lf_skip_survives_empty_decoded_chunk() -> None:
    # b"\xc3" decodes to nothing yet; the pending CRLF must still be recognised.
    assert parse_chunks([b"data: a\r", b"", b"\n\n"]) == [Event("a")]
    assert parse_chunks([b"data: a\r", b"\nid: \xc3", b"\xa9\ndata: b\n\n"]) == [
        Event("a\nb", id="é")
    ]


def test_utf8_character_split_across_chunks() -> None:
    wire = "data: 😀\n\n".encode()
    for i in range(len(wire) + 1):
        for j in range(i, len(wire) + 1):
            assert parse_chunks(cut(wire, [i, j])) == [Event("😀")], (i, j)


def test_bom_split_across_chunks() -> None:
    assert parse_chunks([b"\xef", b"\xbb", b"\xbfdata: x\n\n"]) == [Event("x")]
    assert parse_chunks([b"", b"\xef\xbb\xbf", b"data: x\n\n"]) == [Event("x")]


def test_close_drops_incomplete_event_and_finishes() -> None:
    parser = Parser()
    assert parser.feed(b"data: a\n\ndata: b\n") == [Event("a")]
    assert parser.close() == []
    with pytest.raises(ProtocolError):
        parser.feed(b"\n")
    assert parser.close() == []


def test_cap_many_data_lines() -> None:
    parser = Parser(max_event_size=100)
    with pytest.raises(EventTooLarge):
        for _ in range(100):
            parser.feed(b"data: xxxxxxxx\n")
    with pytest.raises(ProtocolError):
        parser.feed(b"\n")


@pytest.mark.parametrize(
    "overflow", [b"data: " + b"x" * 200, b"data: " + b"x" * 200 + b"\n\n"], ids=["open", "whole"]
)
def test_events_finished_before_an_overflow_in_the_same_chunk_come_with_it(
    overflow: bytes,
) -> None:
    with pytest.raises(EventTooLarge) as raised:
        Parser(max_event_size=100).feed(b"data: a\n\nid: 2\ndata: b\n\n" + overflow)
    assert raised.value.events == [Event("a"), Event("b", id="2")]


def test_cap_many_data_lines_in_one_chunk() -> None:
    with pytest.raises(EventTooLarge):
        Parser(max_event_size=100).feed(b"data: x\n" * 100 + b"\n")


@pytest.mark.parametrize("chunk_size", [1, 7, 1000])
def test_cap_endless_line(chunk_size: int) -> None:
    parser = Parser(max_event_size=1000)
    line = b"data: " + b"x" * 5000
    with pytest.raises(EventTooLarge):
        for i in range(0, len(line), chunk_size):
            parser.feed(line[i : i + chunk_size])
    assert i < 1000 + chunk_size


@pytest.mark.parametrize("piece", [7, 1000, 64 * 1024])
def test_cap_bounds_memory_not_just_the_count(piece: int) -> None:
    """Up to the cap the parser holds the line once, twice while joining its pieces."""
    cap = 256 * 1024
    parser = Parser(max_event_size=cap)
    data = b"x" * piece
    tracemalloc.start()
    try:
        with pytest.raises(EventTooLarge):
            for _ in range(100 * (1 << 20) // piece):  # a 100 MiB line, if it got that far
                parser.feed(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # Besides the characters: one piece being decoded, and up to 1024 pieces' str headers.
    assert peak < 2 * cap + 1024 * 100 + 2 * piece, peak


def test_cap_endless_comment_line() -> None:
    parser = Parser(max_event_size=1000)
    with pytest.raises(EventTooLarge):
        parser.feed(b":" + b"x" * 2000)


def test_cap_applies_per_event_not_per_stream() -> None:
    parser = Parser(max_event_size=100)
    event = encode(Event("x" * 90))
    for _ in range(50):
        assert parser.feed(event) == [Event("x" * 90)]
    # Exactly at the limit is still accepted: 100 data characters as one line.
    exact = b"data:" + b"y" * 95
    assert Parser(max_event_size=100).feed(exact + b"\n\n") == [Event("y" * 95)]
    with pytest.raises(EventTooLarge):
        Parser(max_event_size=100).feed(exact + b"y\n\n")


def test_bad_max_event_size() -> None:
    with pytest.raises(ValueError):
        Parser(max_event_size=0)


def test_encode_wire_format() -> None:
    assert encode(Event("hi")) == b"data: hi\n\n"
    assert encode(Event()) == b"data: \n\n"
    assert (
        encode(Event("a\r\nb\rc\nd", "tok"))
        == b"event: tok\ndata: a\ndata: b\ndata: c\ndata: d\n\n"
    )
    assert encode(Event("x", "e", id="5", retry=10)) == b"id: 5\nevent: e\nretry: 10\ndata: x\n\n"
    assert encode(Event("\n", id="")) == b"id: \ndata: \ndata: \n\n"
    assert encode(Event("é")) == "data: é\n\n".encode()
    assert encode_comment("ping") == b": ping\n\n"
    assert encode_comment() == b":\n\n"
    assert encode_retry(1500) == b"retry: 1500\n\n"


@pytest.mark.parametrize(
    ("event", "bad"),
    [
        (Event(event=""), ""),
        (Event(event="a\nb"), "a\nb"),
        (Event(event="a\rb"), "a\rb"),
        (Event(id="1\n2"), "1\n2"),
        (Event(id="1\r2"), "1\r2"),
        (Event(id="1\x002"), "1\x002"),
        (Event(retry=-1), -1),
    ],
)
def test_encode_rejects(event: Event, bad: object) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(bad))):
        encode(event)


def test_encode_comment_and_retry_reject() -> None:
    with pytest.raises(ValueError, match=re.escape(repr("a\nb"))):
        encode_comment("a\nb")
    with pytest.raises(ValueError, match="-5"):
        encode_retry(-5)


# --- properties -------------------------------------------------------------

line_safe = st.text(st.characters(codec="utf-8", exclude_characters="\r\n\x00"))
# Lists of pieces rather than st.text(), so that multi-character pieces such as
# "\r\n" can be drawn as a unit.
interesting_text = st.lists(
    st.one_of(
        st.characters(codec="utf-8"),
        st.sampled_from(["\n", "\r", "\r\n", "\x00", "\u2028", "\x85", "😀", "中", "\ufeff"]),
    )
).map("".join)
events_st = st.builds(
    Event,
    data=interesting_text,
    event=st.one_of(st.just("message"), line_safe.filter(bool)),
    id=st.none() | line_safe,
    retry=st.none() | st.integers(0, 10**12),
)
items_st = st.lists(
    st.one_of(
        events_st,
        line_safe.map(encode_comment),
        st.integers(0, 10**6).map(encode_retry),
    ),
    max_size=8,
)


def as_expected(event: Event) -> Event:
    return Event(normalize_newlines(event.data), event.event, event.id, event.retry)


@given(items=items_st, data=st.data())
def test_roundtrip(items: list[Event | bytes], data: st.DataObject) -> None:
    wire = b"".join(item if isinstance(item, bytes) else encode(item) for item in items)
    expected = [as_expected(item) for item in items if isinstance(item, Event)]
    points = data.draw(st.lists(st.integers(0, len(wire)), max_size=10))
    parser = Parser()
    events: list[Event] = []
    for chunk in cut(wire, points):
        events.extend(parser.feed(chunk))
    assert events == expected
    ids = [e.id for e in expected if e.id is not None]
    assert parser.last_event_id == (ids[-1] if ids else "")
    retries: list[int] = []
    for item in items:
        if isinstance(item, bytes) and item.startswith(b"retry: "):
            retries.append(int(item[len(b"retry: ") :]))
        elif isinstance(item, Event) and item.retry is not None:
            retries.append(item.retry)
    assert parser.retry == (retries[-1] if retries else None)
    assert parse(wire) == expected


@given(text=interesting_text, ensure_ascii=st.booleans(), data=st.data())
def test_json_payload_is_exact(text: str, ensure_ascii: bool, data: st.DataObject) -> None:
    wire = encode(Event(json.dumps({"text": text}, ensure_ascii=ensure_ascii), "token"))
    points = data.draw(st.lists(st.integers(0, len(wire)), max_size=4))
    [event] = parse_chunks(cut(wire, points))
    assert event.event == "token"
    assert json.loads(event.data)["text"] == text


@given(events=st.lists(events_st, max_size=6))
def test_httpx_sse_agrees(events: list[Event]) -> None:
    wire = b"".join(encode(e) for e in events)
    response = httpx.Response(200, headers={"content-type": "text/event-stream"}, content=wire)
    theirs = [(e.data, e.event, e.id, e.retry) for e in EventSource(response).iter_sse()]
    ours: list[tuple[str, str, str, int | None]] = []
    parser = Parser()
    expected_last = ""
    for e in events:
        [event] = parser.feed(encode(e))
        # httpx-sse reports the persistent last event ID, not the block's own id.
        expected_last = e.id if e.id is not None else expected_last
        assert parser.last_event_id == expected_last
        ours.append((event.data, event.event, parser.last_event_id, event.retry))
    assert ours == theirs
