"""The tables, as SQLAlchemy Core: one definition for SQLite and PostgreSQL.

Times are seconds since the epoch as floats: the same type on both engines,
no time zone conversions, and cheap to compare for pagination cursors.
"""

from __future__ import annotations

import sqlalchemy as sa

__all__ = [
    "api_keys",
    "attachments",
    "conversations",
    "feedback",
    "message_positions",
    "messages",
    "metadata",
    "active_user_names",
    "schema_migrations",
    "users",
]

metadata = sa.MetaData()

schema_migrations = sa.Table(
    "schema_migrations",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("applied_at", sa.Float, nullable=False),
)

conversations = sa.Table(
    "conversations",
    metadata,
    sa.Column("id", sa.String(100), primary_key=True),
    sa.Column("owner", sa.String(200), nullable=False),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("assistant", sa.String(100), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Index("ix_conversations_owner_updated", "owner", "updated_at", "id"),
)

messages = sa.Table(
    "messages",
    metadata,
    sa.Column("id", sa.String(100), primary_key=True),
    sa.Column(
        "conversation_id",
        sa.String(100),
        sa.ForeignKey("conversations.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("owner", sa.String(200), nullable=False),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("role", sa.String(20), nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("finish_reason", sa.String(20)),
    sa.Column("model", sa.String(200)),
    sa.Column("usage", sa.Text),
    sa.Column("reply_to", sa.String(100)),
    sa.Column("stream_id", sa.String(100)),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("finished_at", sa.Float),
    sa.Column("first_token_ms", sa.Float),
    # Who answered, and the usage's numbers beside its JSON: ``GET /v1/usage`` (and the
    # budgets that will check it on every ask) sums them in SQL, the same on both engines.
    sa.Column("assistant", sa.String(100)),
    sa.Column("prompt_tokens", sa.Integer),
    sa.Column("completion_tokens", sa.Integer),
    sa.Column("total_tokens", sa.Integer),
    sa.Column("usage_estimated", sa.Boolean),
    # The model's reasoning, apart from the answer's text: shown to the user (or not, per
    # assistant), never sent back to the model as history.
    sa.Column("reasoning", sa.Text),
    # The message this one follows: a question's is the answer it was asked after (none for
    # a conversation's first), an answer's is its question. Messages sharing a parent are
    # the branches there (an edited question, a regenerated answer); the history the model
    # sees is the path from the root to the question.
    sa.Column("parent_id", sa.String(100)),
    # Which upstream wrote which characters of an answer's text (JSON: a list of parts),
    # when one upstream failed mid-answer and the next continued it; NULL for none.
    sa.Column("sources", sa.Text),
    sa.Index("ix_messages_status", "status"),
    sa.Index("ix_messages_owner_created", "owner", "created_at"),
)

# One message per place in a conversation, enforced by the database: the history is read in
# this order, and two messages sharing a place (asks that raced, before this index and the
# conversation lock) would reach the model in either order.
message_positions = sa.Index(
    "ux_messages_conversation_position",
    messages.c.conversation_id,
    messages.c.position,
    unique=True,
)

feedback = sa.Table(
    "feedback",
    metadata,
    sa.Column(
        "message_id",
        sa.String(100),
        sa.ForeignKey("messages.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("owner", sa.String(200), nullable=False),
    sa.Column("rating", sa.Integer, nullable=False),
    sa.Column("comment", sa.Text),
    sa.Column("created_at", sa.Float, nullable=False),
)

# A question's images, beside its message rather than in it: listing a conversation or
# building a history reads messages often and must not drag the bytes along.
attachments = sa.Table(
    "attachments",
    metadata,
    sa.Column("id", sa.String(100), primary_key=True),
    sa.Column(
        "message_id",
        sa.String(100),
        sa.ForeignKey("messages.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("owner", sa.String(200), nullable=False),
    sa.Column("position", sa.Integer, nullable=False),  # its place among the message's images
    sa.Column("media_type", sa.String(50), nullable=False),  # from the bytes, never the client
    sa.Column("size", sa.Integer, nullable=False),
    sa.Column("data", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Index("ix_attachments_message", "message_id", "position"),
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.String(100), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("revoked_at", sa.Float),
    sa.Index("ix_users_name", "name"),
)

# One active user per name, enforced by the database: two ``users add`` racing each other
# both pass the check in code, and only this index stops the second. Revoked users keep
# their names, so a name can be reused once its user is revoked.
active_user_names = sa.Index(
    "ux_users_active_name",
    users.c.name,
    unique=True,
    sqlite_where=users.c.revoked_at.is_(None),
    postgresql_where=users.c.revoked_at.is_(None),
)

# Only a SHA-256 of each key is kept: keys are 256 random bits, so a fast hash is
# enough (no dictionary to guess from) and lets a request find its key by index.
api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.String(100), primary_key=True),
    sa.Column(
        "user_id", sa.String(100), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("hash", sa.String(64), nullable=False, unique=True),
    sa.Column("prefix", sa.String(20), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("revoked_at", sa.Float),
    sa.Column("last_used_at", sa.Float),
)
