"""Images stored with their question, on SQLite and on a real PostgreSQL: kept beside the
message, listed as metadata only, read by their owner only, gone with the conversation,
and sent to the model only when it reads images."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from images import png
from typewriter.errors import NotFound
from typewriter.images import Image, data_uri
from typewriter.messages import ChatMessage, ContentPart
from typewriter.store.records import Turn
from typewriter.store.schema import attachments
from typewriter.store.sql import SqlStore

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

RED, BLUE = png(rgb=(255, 0, 0)), png(rgb=(0, 0, 255))


async def turn(
    store: SqlStore,
    question: str,
    *images: bytes,
    conversation_id: str | None = None,
    sees: bool = True,
    image_budget: int = 20 << 20,
) -> Turn:
    return await store.start_turn(
        "alice",
        assistant="echo",
        model="echo",
        stream_id="st_x",
        budget_chars=10_000,
        question=question,
        conversation_id=conversation_id,
        images=tuple(Image("image/png", data) for data in images),
        sees_images=sees,
        image_budget=image_budget,
    )


def with_pngs(text: str, *images: bytes) -> ChatMessage:
    parts = (
        ContentPart("text", text),
        *(ContentPart("image_url", url=data_uri("image/png", i)) for i in images),
    )
    return ChatMessage("user", text, parts)


async def test_images_are_stored_listed_served_and_deleted(store: SqlStore) -> None:
    first = await turn(store, "what colours?", RED, BLUE)
    assert first.history == (with_pngs("what colours?", RED, BLUE),)  # the model sees them
    await store.finish(first.answer_id, "red and blue", "stop", None, None)

    listed = await store.messages("alice", first.conversation_id)
    question = listed[0]
    assert [a.media_type for a in question.attachments] == ["image/png", "image/png"]
    assert [a.size for a in question.attachments] == [len(RED), len(BLUE)]
    assert listed[1].attachments == ()
    shown = question.public()["attachments"]
    assert shown[0] == {
        "id": question.attachments[0].id,
        "media_type": "image/png",
        "size": len(RED),
        "url": f"/v1/attachments/{question.attachments[0].id}",
    }

    first_id = question.attachments[0].id
    assert await store.attachment("alice", first_id) == Image("image/png", RED)
    with pytest.raises(NotFound) as other:
        await store.attachment("bob", first_id)  # another user's: as if it did not exist
    assert other.value.code == "attachment_not_found"

    # later questions carry the earlier images in the history, for a model that reads them
    second = await turn(store, "and now?", conversation_id=first.conversation_id)
    assert second.history == (
        with_pngs("what colours?", RED, BLUE),
        ChatMessage("assistant", "red and blue"),
        ChatMessage("user", "and now?"),
    )
    await store.finish(second.answer_id, "same", "stop", None, None)
    # for a model that does not: the text alone
    third = await turn(store, "text only", conversation_id=first.conversation_id, sees=False)
    assert third.history[0] == ChatMessage("user", "what colours?")
    await store.finish(third.answer_id, "ok", "stop", None, None)

    await store.delete_conversation("alice", first.conversation_id)
    with pytest.raises(NotFound):
        await store.attachment("alice", first_id)
    async with store.transaction() as db:
        assert (await db.execute(sa.select(sa.func.count()).select_from(attachments))).scalar() == 0


async def test_regenerating_sends_the_questions_images_again(store: SqlStore) -> None:
    first = await turn(store, "describe", RED)
    await store.finish(first.answer_id, "red", "stop", None, None)
    again = await store.start_turn(
        "alice",
        assistant="echo",
        model="echo",
        stream_id="st_y",
        budget_chars=10_000,
        regenerate=first.answer_id,
        sees_images=True,
    )
    assert again.history == (with_pngs("describe", RED),)


async def test_the_history_carries_the_newest_images_up_to_the_budget(store: SqlStore) -> None:
    """A conversation of many images never loads them all: the newest go while their bytes
    fit ``max_image_bytes`` (the most one request may carry); older ones stay out, their
    text kept."""
    first = await turn(store, "one", RED)
    await store.finish(first.answer_id, "a", "stop", None, None)
    second = await turn(store, "two", BLUE, conversation_id=first.conversation_id)
    await store.finish(second.answer_id, "b", "stop", None, None)
    budget = len(RED) + len(BLUE)  # room for two of the three images
    third = await turn(
        store, "three", RED, conversation_id=first.conversation_id, image_budget=budget
    )
    assert third.history == (
        ChatMessage("user", "one"),  # its image left out: its text goes alone
        ChatMessage("assistant", "a"),
        with_pngs("two", BLUE),
        ChatMessage("assistant", "b"),
        with_pngs("three", RED),
    )
