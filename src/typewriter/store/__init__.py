"""Conversations, messages and feedback: SQLite by default, PostgreSQL at scale."""

from __future__ import annotations

from typewriter.store.records import Conversation, Feedback, Message, Turn
from typewriter.store.sql import SqlStore

__all__ = ["Conversation", "Feedback", "Message", "SqlStore", "Turn"]
