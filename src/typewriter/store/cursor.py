"""The pagination cursor of conversation lists: where the previous page ended.

Conversations are listed newest first by ``(updated_at, id)``, and a cursor is
that key of the last row a page showed, so the next page starts strictly after
it (keyset pagination): conversations added or bumped to the top meanwhile
make no row show twice, as they would with an offset. Clients get it opaque
(URL-safe base64 of a JSON pair, unpadded) and only pass it back; one that does
not decode is the client's mistake, reported as such.
"""

from __future__ import annotations

import base64
import json

from typewriter.errors import InvalidField

__all__ = ["decode_cursor", "encode_cursor"]


def encode_cursor(updated_at: float, last_id: str) -> str:
    raw = json.dumps([updated_at, last_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    """``(updated_at, id)`` of the row the previous page ended on."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        updated_at, last_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
        return float(updated_at), str(last_id)
    except (ValueError, TypeError, UnicodeDecodeError):
        raise InvalidField(
            f"cursor {cursor[:40]!r} is not a cursor this server gave out; "
            "use next_cursor from the previous page",
            fields=[{"field": "cursor", "message": "not a valid pagination cursor"}],
        ) from None
