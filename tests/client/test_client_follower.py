"""The follow state machine without any I/O: every resume decision, byte by byte.

The transports only move bytes and sleep; these tests hold what a follow decides — the
resume point, no event twice, the delays, when to give up — for both clients at once.
"""

from __future__ import annotations

import pytest

from typewriter import events, sse
from typewriter.client import (
    Asked,
    ConnectionFailed,
    ConnectionLost,
    NotFound,
    ProtocolError,
    StreamEvent,
)
from typewriter.client.calls import Api
from typewriter.client.errors import ServiceUnavailable
from typewriter.client.follow import Follower, ResumePolicy

API = Api("http://gateway.test:8000", api_key="tw_key")
URL = "http://gateway.test:8000/v1/streams/st_abc/events"


def wire(*deltas: tuple[int, str], retry: int | None = None, end_at: int | None = None) -> bytes:
    out = b"" if retry is None else sse.encode_retry(retry)
    for ident, text in deltas:
        out += sse.encode(sse.Event(events.encode(events.Delta(text)), "delta", str(ident)))
    if end_at is not None:
        end = events.End("stop", "msg_1")
        out += sse.encode(sse.Event(events.encode(end), "end", str(end_at)))
    return out


def follower(max_reconnects: int = 10, cap: float = 30.0) -> Follower:
    policy = ResumePolicy(max_reconnects=max_reconnects, cap=cap)
    return Follower(API, "st_abc", policy=policy, jitter=lambda: 1.0)


def texts(items: list[StreamEvent]) -> list[str]:
    return [i.event.text for i in items if isinstance(i.event, events.Delta)]


def test_the_target_may_be_an_asked_a_url_or_a_stream_id() -> None:
    asked = Asked("st_abc", None, None, None, "/v1/streams/st_abc/events?ticket=t.s")
    assert Follower(API, "st_abc").url == URL
    assert Follower(API, asked).url == URL + "?ticket=t.s"
    assert Follower(API, URL).url == URL
    ticketed = Follower(API, asked)
    assert ticketed.display_url == URL and ticketed.stream_id == "st_abc"  # no ticket shown


def test_the_first_request_carries_the_key_and_no_resume_point_unless_after() -> None:
    first = Follower(API, "st_abc").request()
    assert first.headers["authorization"] == "Bearer tw_key"
    assert first.headers["accept"] == "text/event-stream"
    assert "last-event-id" not in first.headers
    assert Follower(API, "st_abc", after=7).request().headers["last-event-id"] == "7"


def test_bytes_fed_one_at_a_time_give_the_same_events() -> None:
    data = wire((1, "héllo "), (2, "wörld 🌍"), retry=100, end_at=3)
    whole, split = follower(), follower()
    whole.accepts(200)
    split.accepts(200)
    at_once = whole.feed(data)
    one_by_one = [e for i in range(len(data)) for e in split.feed(data[i : i + 1])]
    assert at_once == one_by_one and texts(at_once) == ["héllo ", "wörld 🌍"]
    assert whole.done and split.done and [e.id for e in at_once] == [1, 2, 3]


def test_a_resumed_connection_delivers_no_event_twice() -> None:
    f = follower()
    f.request()
    f.accepts(200)
    assert texts(f.feed(wire((1, "a"), (2, "b"), (3, "c")))) == ["a", "b", "c"]
    f.lost("connection reset")
    again = f.request()
    assert again.headers["last-event-id"] == "3"
    f.accepts(200)
    # a server (or a proxy's cache) that replays from further back: only the new ones
    assert texts(f.feed(wire((2, "b"), (3, "c"), (4, "d"), end_at=5))) == ["d"]
    assert f.done and f.last_event_id == 5


def test_the_first_reconnect_waits_retry_then_doubles_and_resets_on_progress() -> None:
    f = follower(max_reconnects=5, cap=1.0)
    f.request()
    f.accepts(200)
    f.feed(wire((1, "a"), retry=250))
    f.lost("reset")
    assert f.delay == 0.25
    for expected in (0.5, 1.0, 1.0):  # consecutive failures: doubled, capped
        f.request()
        f.lost("connection refused")
        assert f.delay == expected
    f.request()
    f.accepts(200)
    f.feed(wire((2, "b")))  # progress: the count starts again
    f.closed()
    assert f.delay == 0.25


def test_max_reconnects_in_a_row_that_deliver_nothing_give_up() -> None:
    f = follower(max_reconnects=2)
    f.request()
    f.accepts(200)
    f.feed(wire((1, "a"), (2, "b")))
    f.closed()  # the server ended the response before `end`: resumed
    f.request()
    f.lost("connection refused")
    f.request()
    with pytest.raises(ConnectionLost) as lost:
        f.lost("connection refused")
    assert (lost.value.stream_id, lost.value.last_event_id, lost.value.attempts) == (
        "st_abc",
        2,
        2,
    )
    assert str(lost.value) == (
        f"lost the stream at {URL} after 2 reconnects (last event 2): connection refused"
    )


def test_never_reaching_the_stream_is_connection_failed() -> None:
    f = follower(max_reconnects=1)
    f.request()
    f.lost("connection refused")
    f.request()
    with pytest.raises(ConnectionFailed) as failed:
        f.lost("connection refused")
    assert str(failed.value) == f"cannot reach {URL}: connection refused"


def test_no_reconnect_at_all_with_max_reconnects_zero() -> None:
    f = follower(max_reconnects=0)
    f.request()
    f.accepts(200)
    f.feed(wire((1, "a")))
    with pytest.raises(ConnectionLost):
        f.lost("reset")


def test_a_passing_503_is_retried_after_its_retry_after_and_a_404_is_raised() -> None:
    f = follower()
    f.request()
    body = b'{"error": {"code": "draining", "message": "stopping"}}'
    assert not f.accepts(503)
    f.refused(503, {"retry-after": "3"}, body)
    assert f.delay == 3.0 and not f.done
    f.request()
    assert not f.accepts(404)
    with pytest.raises(NotFound):
        f.refused(404, {}, b'{"error": {"code": "stream_not_found", "message": "no"}}')
    g = follower(max_reconnects=0)
    with pytest.raises(ServiceUnavailable):
        g.refused(503, {}, body)


def test_204_is_the_end() -> None:
    f = follower()
    f.request()
    assert f.accepts(204) and f.done
    assert f.feed(b"") == []


def test_an_unknown_kind_is_skipped_and_a_malformed_event_is_a_protocol_error() -> None:
    f = follower()
    f.request()
    f.accepts(200)
    future = sse.encode(sse.Event('{"x": 1}', "someday", "1"))
    got = f.feed(future + wire((2, "a")))
    assert [(e.id, e.name) for e in got] == [(2, "delta")]
    assert f.feed(future) == []  # received once: not delivered, nor asked for again
    with pytest.raises(ProtocolError) as bad:
        f.feed(sse.encode(sse.Event('{"txt": "no"}', "delta", "9")))
    assert URL in str(bad.value)


def test_a_direct_ask_is_never_sent_twice_and_resumes_once_it_names_its_stream() -> None:
    ask = API.ask_direct("hi", assistant="echo")
    assert ask.method == "POST" and ask.headers["accept"] == "text/event-stream"
    assert b'"on_disconnect": "continue"' in (ask.body or b"")
    cut_early = Follower.asking(API, ask)
    assert cut_early.request() is ask
    with pytest.raises(ConnectionFailed):  # the question may have been recorded: no retry
        cut_early.lost("connection reset")
    refused = Follower.asking(API, ask)
    refused.request()
    with pytest.raises(ServiceUnavailable):  # not retried either, even a 503
        refused.refused(503, {}, b'{"error": {"code": "draining", "message": "x"}}')
    f = Follower.asking(API, ask, policy=ResumePolicy(), jitter=lambda: 1.0)
    f.request()
    assert f.accepts(200, {"x-stream-id": "st_abc"})
    f.feed(wire((1, "a"), (2, "b"), retry=100))
    f.lost("connection reset")
    again = f.request()
    assert (again.method, again.url, again.headers["last-event-id"]) == ("GET", URL, "2")
    nameless = Follower.asking(API, ask)
    nameless.request()
    with pytest.raises(ProtocolError):
        nameless.accepts(200, {})
