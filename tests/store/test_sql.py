"""The store against both engines: every test runs on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest

from typewriter.errors import InvalidField, NotFound
from typewriter.messages import ChatMessage
from typewriter.store.migrations import STEPS
from typewriter.store.records import Turn
from typewriter.store.sql import SqlStore

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


async def turn(
    store: SqlStore, question: str, conversation_id: str | None = None, budget: int = 10_000
) -> Turn:
    return await store.start_turn(
        "alice",
        assistant="echo",
        model="echo",
        stream_id="st_x",
        budget_chars=budget,
        question=question,
        conversation_id=conversation_id,
    )


async def test_a_first_question_starts_a_conversation_titled_by_it(store: SqlStore) -> None:
    first = await turn(store, "\n  What is SSE?\nmore")
    conversation = await store.get_conversation("alice", first.conversation_id)
    assert conversation.title == "What is SSE?"
    assert first.history == (ChatMessage("user", "\n  What is SSE?\nmore"),)
    messages = await store.messages("alice", first.conversation_id)
    assert [(m.role, m.status) for m in messages] == [("user", "done"), ("assistant", "streaming")]
    assert messages[1].reply_to == first.question_id and messages[1].stream_id == "st_x"


async def test_answers_are_finished_with_their_reason_and_usage(store: SqlStore) -> None:
    first = await turn(store, "q")
    await store.checkpoint(first.answer_id, "partial")
    assert (await store.get_message("alice", first.answer_id)).text == "partial"
    await store.finish(
        first.answer_id, "partial and more", "cancelled", {"completion_tokens": 3}, 12.5
    )
    answer = await store.get_message("alice", first.answer_id)
    assert (answer.text, answer.status, answer.finish_reason) == (
        "partial and more",
        "done",
        "cancelled",
    )
    assert answer.public()["usage"] == {"completion_tokens": 3}
    assert answer.first_token_ms == 12.5 and answer.finished_at is not None
    await store.checkpoint(first.answer_id, "late checkpoint")  # never overwrites a finished answer
    assert (await store.get_message("alice", first.answer_id)).text == "partial and more"


async def test_history_is_the_conversation_within_the_budget(store: SqlStore) -> None:
    first = await turn(store, "one")
    await store.finish(first.answer_id, "ONE", "stop", None, None)
    second = await turn(store, "two", first.conversation_id)
    await store.finish(second.answer_id, "TWO", "stop", None, None)
    third = await turn(store, "three", first.conversation_id)
    assert [m.content for m in third.history] == ["one", "ONE", "two", "TWO", "three"]
    await store.finish(third.answer_id, "", "cancelled", None, None)  # one answer at a time
    tight = await turn(store, "four", first.conversation_id, budget=len("TWOthree") + len("four"))
    await store.finish(tight.answer_id, "", "cancelled", None, None)
    # oldest dropped first; the new question is always kept, even over budget
    assert [m.content for m in tight.history][-1] == "four"
    assert "one" not in [m.content for m in tight.history]
    alone = await turn(store, "x" * 50, first.conversation_id, budget=10)
    assert alone.history == (ChatMessage("user", "x" * 50),)


async def test_regenerate_answers_the_same_question_with_the_history_before_it(
    store: SqlStore,
) -> None:
    first = await turn(store, "one")
    await store.finish(first.answer_id, "ONE", "stop", None, None)
    second = await turn(store, "two", first.conversation_id)
    await store.finish(second.answer_id, "TWO", "stop", None, None)
    again = await store.start_turn(
        "alice",
        assistant="echo",
        model="echo",
        stream_id="st_y",
        budget_chars=10_000,
        regenerate=second.answer_id,
    )
    assert again.question_id == second.question_id
    assert [m.content for m in again.history] == ["one", "ONE", "two"]
    await store.finish(again.answer_id, "TWO again", "stop", None, None)
    after = await turn(store, "three", first.conversation_id)
    assert [m.content for m in after.history] == ["one", "ONE", "two", "TWO again", "three"]


async def test_list_is_newest_first_with_cursor_pages(store: SqlStore) -> None:
    ids = []
    for i in range(5):
        started = await turn(store, f"q{i}")
        await store.finish(started.answer_id, "a", "stop", None, None)  # one answer at a time
        ids.append(started.conversation_id)
        await asyncio.sleep(0.002)
    await turn(store, "bump", ids[0])  # activity moves a conversation to the top
    expected = [ids[0], ids[4], ids[3], ids[2], ids[1]]
    seen, cursor = [], None
    while True:
        page, cursor = await store.list_conversations("alice", 2, cursor)
        seen += [c.id for c in page]
        if cursor is None:
            break
    assert seen == expected
    assert (await store.list_conversations("bob", 10, None)) == ([], None)
    for bad in ["garbage", "e30", "W10", "!!!"]:
        with pytest.raises(InvalidField):
            await store.list_conversations("alice", 2, bad)


async def test_rename_delete_clear_and_feedback(store: SqlStore) -> None:
    first = await turn(store, "q")
    cid = first.conversation_id
    assert (await store.rename_conversation("alice", cid, "Renamed")).title == "Renamed"
    await store.set_feedback("alice", first.answer_id, 1, "nice")
    await store.set_feedback("alice", first.answer_id, -1, None)  # replaces
    rated = await store.get_message("alice", first.answer_id)
    assert rated.feedback is not None and (rated.feedback.rating, rated.feedback.comment) == (
        -1,
        None,
    )
    await store.clear_messages("alice", cid)
    assert await store.messages("alice", cid) == []
    assert (await store.get_conversation("alice", cid)).title == "Renamed"
    await store.delete_conversation("alice", cid)
    with pytest.raises(NotFound):
        await store.delete_conversation("alice", cid)
    with pytest.raises(NotFound):
        await store.get_message("alice", first.answer_id)


async def test_another_user_sees_nothing(store: SqlStore) -> None:
    first = await turn(store, "secret")
    cid, mid = first.conversation_id, first.answer_id
    for call in [
        store.get_conversation("mallory", cid),
        store.messages("mallory", cid),
        store.rename_conversation("mallory", cid, "x"),
        store.delete_conversation("mallory", cid),
        store.clear_messages("mallory", cid),
        store.get_message("mallory", mid),
        store.set_feedback("mallory", mid, 1, None),
    ]:
        with pytest.raises(NotFound):
            await call
    with pytest.raises(NotFound):
        await store.start_turn(
            "mallory",
            assistant="echo",
            model="echo",
            stream_id="s",
            budget_chars=100,
            question="q",
            conversation_id=cid,
        )
    assert len(await store.messages("alice", cid)) == 2


async def test_unfinished_answers_survive_a_restart_and_can_be_interrupted(
    database_url: str,
) -> None:
    first_life = SqlStore(database_url)
    await first_life.start()
    started = await turn(first_life, "q")
    other = await turn(first_life, "q2")
    finished = await turn(first_life, "q3")
    await first_life.checkpoint(started.answer_id, "shown so far")
    await first_life.finish(finished.answer_id, "all of it", "stop", None, None)
    await first_life.close()  # the process "dies" without finishing two answers
    second_life = SqlStore(database_url)
    await second_life.start()
    left = await second_life.streaming_answers()
    assert {m for m, _ in left} == {started.answer_id, other.answer_id}
    assert all(stream_id.startswith("st_") for _, stream_id in left)
    assert await second_life.interrupt([started.answer_id]) == 1
    assert await second_life.interrupt([other.answer_id], "the full text") == 1
    assert await second_life.interrupt([finished.answer_id], "nope") == 0  # already ended
    answer = await second_life.get_message("alice", started.answer_id)
    assert (answer.status, answer.text) == ("interrupted", "shown so far")
    assert (await second_life.get_message("alice", other.answer_id)).text == "the full text"
    assert (await second_life.get_message("alice", finished.answer_id)).text == "all of it"
    assert await second_life.streaming_answers() == []
    assert await second_life.start() == len(STEPS)  # migrating again changes nothing
    await second_life.close()
