"""``AsyncClient`` covers the whole API, and gives what ``Client`` gives for the same calls."""

from __future__ import annotations

import json
from contextlib import aclosing
from datetime import UTC, datetime
from typing import Any

import pytest

from conftest import RunningServer
from images import png_uri
from typewriter.client import AsyncClient, Client, StreamEvent
from typewriter.events import Delta, End, Start

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


def text(events: list[StreamEvent]) -> str:
    return "".join(e.event.text for e in events if isinstance(e.event, Delta))


def shape(events: list[StreamEvent]) -> list[tuple[int, str, Any]]:
    """Events as comparable across two answers: ids and names, the deltas' text."""
    return [(e.id, e.name, e.event.text if isinstance(e.event, Delta) else None) for e in events]


async def test_both_clients_give_the_same_events(server: RunningServer) -> None:
    async with AsyncClient(server.url) as aclient:
        asked = await aclient.ask("the same question", assistant="echo")
        from_async = [e async for e in aclient.follow(asked)]
        rest_async = [e async for e in aclient.follow(asked.stream_id, after=2)]
        streamed = [e async for e in aclient.stream("the same question", assistant="echo")]
    with Client(server.url) as client:
        from_sync = list(client.follow(asked))
        rest_sync = list(client.follow(asked.stream_id, after=2))
    assert from_async == from_sync and rest_async == rest_sync == from_sync[2:]
    assert shape(streamed) == shape(from_sync)
    assert text(from_async) == "the same question"
    start, end = from_async[0].event, from_async[-1].event
    assert isinstance(start, Start) and start.stream_id == asked.stream_id
    assert isinstance(end, End) and end.finish_reason == "stop"


async def test_the_async_client_covers_conversations_feedback_usage_and_tickets(
    server: RunningServer,
) -> None:
    async with AsyncClient(server.url) as client:
        made = await client.create_conversation(title="planned", assistant="echo")
        assert made["title"] == "planned" and made["assistant"] == "echo"
        renamed = await client.rename_conversation(made["id"], "renamed")
        assert renamed["title"] == "renamed"
        asked = await client.ask("with a picture", conversation_id=made["id"], images=[png_uri()])
        events = [e async for e in client.follow(asked)]
        assert text(events) == "with a picture"
        stored = await client.conversation(made["id"])
        assert len(stored["messages"][0]["attachments"]) == 1
        edited = await client.edit(stored["messages"][0]["id"], "edited", images=[])
        assert text([e async for e in client.follow(edited)]) == "edited"
        branch = await client.branch(made["id"])
        assert [m["text"] for m in branch["messages"]] == ["edited", "edited"]
        assert branch["messages"][0]["attachments"] == []
        older = await client.branch(made["id"], through=stored["messages"][0]["id"])
        assert [m["text"] for m in older["messages"]] == ["with a picture"] * 2
        rated = await client.feedback(str(edited.message_id), 1, "good")
        assert (rated["rating"], rated["comment"]) == (1, "good")
        today = datetime.now(UTC).date()
        usage = await client.usage(from_=today, to=today.isoformat(), assistant="echo")
        assert usage["total"]["answers"] == 2
        ticket = await client.ticket(asked.stream_id)
        assert ticket["events_url"].startswith(f"/v1/streams/{asked.stream_id}/events")
        found = await client.conversations(q="edited", limit=5)
        assert [c["id"] for c in found] == [made["id"]]
        exported = json.loads(await client.export(made["id"], format="json"))
        assert len(exported["messages"]) == 4
        markdown = await client.export(made["id"], through=stored["messages"][1]["id"])
        assert "with a picture" in markdown and "edited" not in markdown.split("\n", 1)[1]
        await client.clear_messages(made["id"])
        assert (await client.conversation(made["id"]))["messages"] == []
        await client.delete_conversation(made["id"])
        assert await client.conversations() == []


async def test_the_async_client_stops_an_answer(server: RunningServer) -> None:
    question = "".join(f"{i:04d}" for i in range(500))
    async with AsyncClient(server.url) as client:
        seen: list[StreamEvent] = []
        asked = await client.ask(question, assistant="echo")
        async with aclosing(client.follow(asked)) as events:
            async for event in events:
                seen.append(event)
                if len(seen) == 3:
                    assert await client.cancel(asked.stream_id) is False
        again = await client.cancel(asked.stream_id)
        regenerated = await client.regenerate(
            str(asked.message_id), assistant="echo", options={"max_tokens": 5}
        )
        redone = [e async for e in client.follow(regenerated)]
    end = seen[-1].event
    assert isinstance(end, End) and end.finish_reason == "cancelled" and again is True
    assert question.startswith(text(seen)) and len(text(seen)) < len(question)
    redone_end = redone[-1].event
    assert isinstance(redone_end, End) and redone_end.finish_reason == "length"
    assert text(redone) == question[:20]  # five pieces of four characters
