"""Identifiers: random, URL-safe, prefixed by kind so a log line says what it names."""

from __future__ import annotations

import re
import secrets

__all__ = ["ID_PATTERN", "is_valid_id", "new_id"]

ID_PATTERN = r"^[A-Za-z0-9_-]{1,100}$"
_ID = re.compile(ID_PATTERN)


def new_id(kind: str) -> str:
    return f"{kind}_{secrets.token_urlsafe(16)}"


def is_valid_id(value: str) -> bool:
    """Ids from clients are checked before use: path characters never reach a backend."""
    return _ID.fullmatch(value) is not None
