"""Schema versions, applied in order at start-up, all of them in one transaction.

A list of functions and a ``schema_migrations`` table rather than Alembic:
the migrations ship inside the package and run on every start with no
command to remember, and at this size Alembic's script directory and env.py
would be more machinery than schema. Each step is written once, never edited
after release; a new change is a new step appended to ``STEPS``.

``migrate`` opens one transaction for the whole run: it creates the
``schema_migrations`` table if it is missing, runs every step whose version is
not recorded there, in order, records each, and commits once at the end. A
step that fails rolls back the versions recorded by every step of that run.

On PostgreSQL the transaction first takes an advisory lock
(``pg_advisory_xact_lock(LOCK_KEY)``, held until the commit or rollback), so a
replica starting at the same time waits, then finds the versions recorded and
runs none of them again; and as PostgreSQL's DDL is transactional, a run that
fails leaves nothing behind. SQLite takes no lock here, and its driver
(Python's ``sqlite3``, under aiosqlite) begins the transaction only at the
first INSERT, so the DDL before it (creating ``schema_migrations`` and the
first step to run) commits on its own: a failed run can leave that step's
tables without its version, and the next start runs it again. So a step must
be safe to run twice on SQLite; ``create_all`` is, as it skips tables that exist.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from typewriter.errors import ConfigError
from typewriter.store import schema
from typewriter.store.usage import usage_columns

__all__ = ["LOCK_KEY", "STEPS", "migrate"]

Step = Callable[[sa.Connection], None]
LOCK_KEY = 0x7479_7065  # "type": any constant, the same in every replica and every version


def _v1_initial(connection: sa.Connection) -> None:
    tables = [schema.conversations, schema.messages, schema.feedback]
    schema.metadata.create_all(connection, tables=tables)


def _v2_users(connection: sa.Connection) -> None:
    schema.metadata.create_all(connection, tables=[schema.users, schema.api_keys])


def _v3_key_use_and_unique_names(connection: sa.Connection) -> None:
    """When each key was last used, and one active user per name in the database itself.

    A new database already has both (``_v2_users`` creates the tables as they are defined
    now), so each is added only where missing. Two active users of one name, left by adds
    that raced before the index, stop the start with their ids, for the operator to choose.
    """
    columns = {column["name"] for column in sa.inspect(connection).get_columns("api_keys")}
    if "last_used_at" not in columns:
        column_type = schema.api_keys.c.last_used_at.type.compile(dialect=connection.dialect)
        connection.execute(sa.text(f"ALTER TABLE api_keys ADD COLUMN last_used_at {column_type}"))
    _refuse_duplicate_names(connection)
    schema.active_user_names.create(connection, checkfirst=True)


def _refuse_duplicate_names(connection: sa.Connection) -> None:
    users = schema.users
    active = users.c.revoked_at.is_(None)
    twice = sa.select(users.c.name).where(active).group_by(users.c.name).having(sa.func.count() > 1)
    rows = connection.execute(
        sa.select(users.c.name, users.c.id).where(active, users.c.name.in_(twice))
    ).all()
    if rows:
        found = ", ".join(f"{name} ({user_id})" for name, user_id in sorted(rows))
        raise ConfigError(
            f"active users share a name: {found}. Revoke all but one of each "
            "(UPDATE users SET revoked_at = <epoch seconds> WHERE id = '<id>') and start again"
        )


def _v4_unique_positions(connection: sa.Connection) -> None:
    """One message per position in a conversation, in the database itself.

    Asks that raced before could give two messages one position: each such conversation
    is numbered again, 1, 2, 3… in the order it was read (position, then time, then id),
    before the unique index replaces the plain one. A new database has it already.
    """
    messages = schema.messages
    shared = (
        sa.select(messages.c.conversation_id)
        .group_by(messages.c.conversation_id, messages.c.position)
        .having(sa.func.count() > 1)
        .distinct()
    )
    for (conversation_id,) in connection.execute(shared).all():
        order = sa.select(messages.c.id).where(messages.c.conversation_id == conversation_id)
        ids = connection.execute(
            order.order_by(messages.c.position, messages.c.created_at, messages.c.id)
        ).scalars()
        for position, message_id in enumerate(list(ids), start=1):
            connection.execute(
                messages.update().where(messages.c.id == message_id).values(position=position)
            )
    connection.execute(sa.text("DROP INDEX IF EXISTS ix_messages_conversation_position"))
    schema.message_positions.create(connection, checkfirst=True)


def _v5_usage_columns(connection: sa.Connection) -> None:
    """Each answer's assistant and usage as columns, for ``GET /v1/usage`` to sum in SQL.

    Answers written before have their usage only as JSON: its numbers are copied into the
    new columns, and their assistant is taken as their conversation's (the one that
    answers when an ask names none: the best guess left for them). Only rows still
    without values are filled, so a second run on SQLite changes nothing.
    """
    messages = schema.messages
    present = {column["name"] for column in sa.inspect(connection).get_columns("messages")}
    for name in ("assistant", "prompt_tokens", "completion_tokens", "total_tokens"):
        if name not in present:
            column_type = messages.c[name].type.compile(dialect=connection.dialect)
            connection.execute(sa.text(f"ALTER TABLE messages ADD COLUMN {name} {column_type}"))
    if "usage_estimated" not in present:
        column_type = messages.c.usage_estimated.type.compile(dialect=connection.dialect)
        connection.execute(
            sa.text(f"ALTER TABLE messages ADD COLUMN usage_estimated {column_type}")
        )
    conversations = schema.conversations
    of_conversation = (
        sa.select(conversations.c.assistant)
        .where(conversations.c.id == messages.c.conversation_id)
        .scalar_subquery()
    )
    connection.execute(
        messages.update()
        .where(messages.c.role == "assistant", messages.c.assistant.is_(None))
        .values(assistant=of_conversation)
    )
    rows = connection.execute(
        sa.select(messages.c.id, messages.c.usage).where(
            messages.c.usage.is_not(None), messages.c.total_tokens.is_(None)
        )
    ).all()
    for message_id, usage in rows:
        try:
            parsed = json.loads(usage)
        except ValueError:
            continue
        connection.execute(
            messages.update().where(messages.c.id == message_id).values(**usage_columns(parsed))
        )
    owner_created = next(i for i in messages.indexes if i.name == "ix_messages_owner_created")
    owner_created.create(connection, checkfirst=True)


def _v6_reasoning(connection: sa.Connection) -> None:
    """Each answer's reasoning in a column of its own, apart from its text.

    Answers written before have none (NULL). A new database has the column already, so it
    is added only where missing, and a second run on SQLite changes nothing.
    """
    present = {column["name"] for column in sa.inspect(connection).get_columns("messages")}
    if "reasoning" not in present:
        column_type = schema.messages.c.reasoning.type.compile(dialect=connection.dialect)
        connection.execute(sa.text(f"ALTER TABLE messages ADD COLUMN reasoning {column_type}"))


def _v7_attachments(connection: sa.Connection) -> None:
    """Images sent with questions, one row each beside their message (a new table)."""
    schema.metadata.create_all(connection, tables=[schema.attachments])


def _v8_parents(connection: sa.Connection) -> None:
    """Each message's parent, so that a conversation can branch (an edited question).

    Messages written before were one line, with regenerated answers beside the answer they
    replaced; the history took each question's newest answer. So an answer's parent is its
    question, and a question's is the newest answer to the question before it (that question
    itself when it has no answer): each conversation reads on as it did. Only rows still
    without a parent are filled (a second run on SQLite changes nothing).
    """
    messages = schema.messages
    present = {column["name"] for column in sa.inspect(connection).get_columns("messages")}
    if "parent_id" not in present:
        column_type = messages.c.parent_id.type.compile(dialect=connection.dialect)
        connection.execute(sa.text(f"ALTER TABLE messages ADD COLUMN parent_id {column_type}"))
    connection.execute(
        messages.update()
        .where(messages.c.role == "assistant", messages.c.parent_id.is_(None))
        .values(parent_id=messages.c.reply_to)
    )
    rows = connection.execute(
        sa.select(
            messages.c.id,
            messages.c.conversation_id,
            messages.c.role,
            messages.c.reply_to,
            messages.c.parent_id,
        ).order_by(messages.c.conversation_id, messages.c.position, messages.c.created_at)
    ).all()
    newest_answer = {row.reply_to: row.id for row in rows if row.role == "assistant"}
    previous_question: dict[str, str] = {}  # conversation id -> its last question so far
    parents: list[dict[str, str]] = []
    for row in rows:
        if row.role != "user":
            continue
        before = previous_question.get(row.conversation_id)
        parent = newest_answer.get(before, before) if before else None
        if row.parent_id is None and parent is not None:
            parents.append({"row_id": row.id, "row_parent": parent})
        previous_question[row.conversation_id] = row.id
    if parents:
        connection.execute(
            messages.update()
            .where(messages.c.id == sa.bindparam("row_id"))
            .values(parent_id=sa.bindparam("row_parent")),
            parents,
        )


def _v9_sources(connection: sa.Connection) -> None:
    """Which upstream wrote which part of an answer: a column of JSON, NULL for the answers
    written before (their writer is not known). Added only where missing, like ``_v6``."""
    present = {column["name"] for column in sa.inspect(connection).get_columns("messages")}
    if "sources" not in present:
        column_type = schema.messages.c.sources.type.compile(dialect=connection.dialect)
        connection.execute(sa.text(f"ALTER TABLE messages ADD COLUMN sources {column_type}"))


STEPS: list[Step] = [
    _v1_initial,
    _v2_users,
    _v3_key_use_and_unique_names,
    _v4_unique_positions,
    _v5_usage_columns,
    _v6_reasoning,
    _v7_attachments,
    _v8_parents,
    _v9_sources,
]


async def migrate(engine: AsyncEngine) -> int:
    """Bring the schema to the newest version; returns the version reached."""
    async with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            await connection.execute(sa.text(f"SELECT pg_advisory_xact_lock({LOCK_KEY})"))
        await connection.run_sync(
            lambda sync: schema.metadata.create_all(sync, tables=[schema.schema_migrations])
        )
        applied = await _applied(connection)
        for version, step in enumerate(STEPS, start=1):
            if version in applied:
                continue
            await connection.run_sync(step)
            await connection.execute(
                schema.schema_migrations.insert().values(version=version, applied_at=time.time())
            )
    return len(STEPS)


async def _applied(connection: AsyncConnection) -> set[int]:
    rows = await connection.execute(sa.select(schema.schema_migrations.c.version))
    return {row[0] for row in rows}
