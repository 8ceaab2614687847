"""``Client`` end to end against a real server: ask, follow, stop, conversations."""

from __future__ import annotations

import json

import pytest

from conftest import RunningServer
from typewriter.client import Asked, Client, NotFound, StreamEvent
from typewriter.events import Delta, End, Start
from typewriter.models.simulated import CANNED_ANSWER

pytestmark = pytest.mark.integration


def text(events: list[StreamEvent]) -> str:
    return "".join(e.event.text for e in events if isinstance(e.event, Delta))


def test_ask_then_follow_gives_typed_events_with_their_ids(server: RunningServer) -> None:
    with Client(server.url) as client:
        asked = client.ask("What is SSE?")
        events = list(client.follow(asked))
    assert isinstance(asked, Asked) and asked.stream_id.startswith("st_")
    assert isinstance(events[0].event, Start) and events[0].name == "start"
    assert events[0].event.stream_id == asked.stream_id
    assert events[0].event.message_id == asked.message_id
    assert text(events) == CANNED_ANSWER
    end = events[-1].event
    assert isinstance(end, End) and end.finish_reason == "stop"
    assert [e.id for e in events] == list(range(1, len(events) + 1))


def test_follow_after_an_id_and_by_stream_id_gives_the_rest(server: RunningServer) -> None:
    with Client(server.url) as client:
        asked = client.ask("abcdefghijklmnopqrstuvwxyz", assistant="echo")
        whole = list(client.follow(asked))
        rest = list(client.follow(asked.stream_id, after=3))
        url_rest = list(client.follow(asked.events_url, after=len(whole) - 1))
    assert rest == whole[3:]
    assert url_rest == whole[-1:]


def test_a_finished_stream_followed_after_its_end_is_empty(server: RunningServer) -> None:
    """204: everything was delivered, nothing is repeated."""
    with Client(server.url) as client:
        asked = client.ask("hello", assistant="echo")
        whole = list(client.follow(asked))
        assert list(client.follow(asked, after=whole[-1].id)) == []


def test_cancel_stops_the_answer_on_the_server(server: RunningServer) -> None:
    question = "".join(f"{i:04d}" for i in range(500))  # 10 s of echo
    with Client(server.url) as client:
        seen: list[StreamEvent] = []
        asked = client.ask(question, assistant="echo")
        for event in client.follow(asked):
            seen.append(event)
            if len(seen) == 3:
                assert client.cancel(asked.stream_id) is False
        end = seen[-1].event
        assert isinstance(end, End) and end.finish_reason == "cancelled"
        assert question.startswith(text(seen)) and len(text(seen)) < len(question)
        assert asked.conversation_id is not None
        stored = client.conversation(asked.conversation_id)["messages"][-1]
    assert stored["finish_reason"] == "cancelled" and stored["text"] == text(seen)


def test_stream_conversations_branch_regenerate_export_delete(server: RunningServer) -> None:
    with Client(server.url) as client:
        first = list(client.stream("one", assistant="echo"))
        start = first[0].event
        assert isinstance(start, Start)
        conversation = start.conversation_id
        second = list(client.stream("two", conversation_id=conversation))
        assert text(first) == "one" and text(second) == "two"
        listed = client.conversations(limit=5)
        assert [c["id"] for c in listed] == [conversation]
        whole = client.conversation(conversation)
        assert [m["text"] for m in whole["messages"]] == ["one", "one", "two", "two"]
        again = client.regenerate(whole["messages"][-1]["id"])
        assert text(list(client.follow(again))) == "two"
        branch = client.branch(conversation)
        assert branch["messages"][-1]["id"] == again.message_id
        assert len(branch["messages"][-1]["siblings"]) == 2
        exported = client.export(conversation)
        assert exported.startswith("# one") and "## You" in exported
        as_json = json.loads(client.export(conversation, format="json"))
        assert len(as_json["messages"]) == 5
        assert client.assistants().default == "default"
        assert "echo" in client.assistants().names
        client.delete_conversation(conversation)
        with pytest.raises(NotFound) as missing:
            client.conversation(conversation)
    assert missing.value.code == "conversation_not_found" and missing.value.status == 404
