"""An answer's reasoning in the store: its own column, checkpointed with the text, never history.

Both engines (``database_url`` is SQLite and PostgreSQL). The generation's lists grow as the
model speaks; the checkpointer saves what they hold every interval, one write for text and
reasoning together, so a process killed outright keeps the reasoning as it keeps the text.
"""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from typewriter.recorder import Checkpointer, Recorder
from typewriter.store import migrations, schema
from typewriter.store.migrations import STEPS, migrate
from typewriter.store.sql import SqlStore

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

INTERVAL = 0.05


async def test_migration_6_adds_the_column_to_a_database_made_before_it(
    database_url: str,
) -> None:
    engine = create_async_engine(database_url)
    try:
        with pytest.MonkeyPatch.context() as patched:
            patched.setattr(migrations, "STEPS", STEPS[:5])
            await migrate(engine)
        async with engine.begin() as db:  # as version 5 made it: no reasoning column
            await db.execute(sa.text("ALTER TABLE messages DROP COLUMN reasoning"))
            await db.execute(
                sa.text(
                    "INSERT INTO conversations (id, owner, title, assistant, created_at,"
                    " updated_at) VALUES ('conv_old', 'local', 't', 'echo', 1, 1)"
                )
            )
            await db.execute(
                sa.text(
                    "INSERT INTO messages (id, conversation_id, owner, position, role, text,"
                    " status, created_at) VALUES ('msg_old', 'conv_old', 'local', 1,"
                    " 'assistant', 'an old answer', 'done', 1)"
                )
            )
        assert await migrate(engine) == len(STEPS) >= 6
        assert await migrate(engine) == len(STEPS)  # a second run changes nothing
        async with engine.connect() as db:
            m = schema.messages
            row = (await db.execute(sa.select(m.c.text, m.c.reasoning))).one()
        assert tuple(row) == ("an old answer", None)
    finally:
        await engine.dispose()


async def test_reasoning_is_checkpointed_with_the_text_and_stored_at_the_end(
    database_url: str,
) -> None:
    store = SqlStore(database_url)
    await store.start()
    checkpointer = Checkpointer(store, INTERVAL)
    try:
        turn = await store.start_turn(
            "alice",
            assistant="up",
            model="m",
            stream_id="st_1",
            budget_chars=10_000,
            question="why?",
        )
        parts: list[str] = []
        reasoning: list[str] = []
        recorder = Recorder(checkpointer, turn.answer_id)
        recorder.start(parts, reasoning)

        reasoning.append("Let me think")
        await asyncio.sleep(INTERVAL * 4)
        answer = await store.get_message("alice", turn.answer_id)
        assert (answer.status, answer.text, answer.reasoning) == ("streaming", "", "Let me think")

        reasoning.append(" it through.")  # only the reasoning grew: still saved
        await asyncio.sleep(INTERVAL * 4)
        answer = await store.get_message("alice", turn.answer_id)
        assert answer.reasoning == "Let me think it through."

        parts.append("Because.")
        await asyncio.sleep(INTERVAL * 4)
        answer = await store.get_message("alice", turn.answer_id)
        assert (answer.text, answer.reasoning) == ("Because.", "Let me think it through.")

        await recorder.finish("Because.", "stop", None, 1.0, reasoning="Let me think it through.")
        answer = await store.get_message("alice", turn.answer_id)
        assert (answer.status, answer.text, answer.reasoning) == (
            "done",
            "Because.",
            "Let me think it through.",
        )
        assert answer.public()["reasoning"] == "Let me think it through."
        assert answer.public(show_reasoning=False)["reasoning"] is None

        # The next question's history has the answer's text, never its reasoning.
        following = await store.start_turn(
            "alice",
            assistant="up",
            model="m",
            stream_id="st_2",
            budget_chars=10_000,
            question="and then?",
            conversation_id=turn.conversation_id,
        )
        contents = [message.content for message in following.history]
        assert contents == ["why?", "Because.", "and then?"]
    finally:
        await checkpointer.stop()
        await store.close()


async def test_an_answer_without_reasoning_stores_null(database_url: str) -> None:
    store = SqlStore(database_url)
    await store.start()
    try:
        turn = await store.start_turn(
            "bob", assistant="echo", model="m", stream_id="st", budget_chars=100, question="q"
        )
        await store.checkpoint_many([(turn.answer_id, "so far")], [turn.answer_id])
        await store.finish(turn.answer_id, "done text", "stop", None, None)
        answer = await store.get_message("bob", turn.answer_id)
        assert (answer.text, answer.reasoning) == ("done text", None)
    finally:
        await store.close()
