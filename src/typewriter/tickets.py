"""Signed tickets for EventSource URLs, which cannot carry an Authorization header.

A ticket names a user, a scope (one stream, or the user's channel) and an
expiry, signed with HMAC-SHA256 under the server's secret. It is not a key:
it opens only the events of its scope, only until it expires, and the API
refuses it anywhere a key is expected. Sans-I/O: the clock is passed in.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import secrets
from pathlib import Path

from typewriter.errors import StreamNotFound, Unauthorized
from typewriter.private_files import create_private_file, make_private_dir, warn_if_exposed

__all__ = ["CHANNEL", "issue", "load_secret", "scope_of", "stream_scope", "verify"]

CHANNEL = "channel"
_MAC_BYTES = 16


def stream_scope(stream_id: str) -> str:
    return f"stream:{stream_id}"


def scope_of(stream_id: str | None) -> str:
    """The scope of an events URL: one stream's, or without a stream the user's channel."""
    return CHANNEL if stream_id is None else stream_scope(stream_id)


def issue(secret: bytes, user: str, scope: str, expires_at: float) -> str:
    """A ticket for ``user`` and ``scope``, valid until ``expires_at`` rounded *up* to the
    second: truncating would give a ticket made late in a second up to a second less
    than it was promised (all of it, with a one-second lifetime)."""
    payload = f"{user}|{scope}|{math.ceil(expires_at)}".encode()
    mac = hmac.new(secret, payload, hashlib.sha256).digest()[:_MAC_BYTES]
    return f"{_b64(payload)}.{_b64(mac)}"


def verify(secret: bytes, ticket: str, scope: str, now: float) -> str:
    """The ticket's user, if it is genuine, unexpired and for this scope.

    Altered or expired: 401. Genuine but for another stream: 404, exactly as if
    the stream did not exist, so a ticket tells nothing about other streams.
    """
    encoded, dot, encoded_mac = ticket.partition(".")
    try:
        payload = _unb64(encoded)
        mac = _unb64(encoded_mac)
    except (ValueError, binascii.Error):
        raise Unauthorized("the ticket is not valid", code="invalid_ticket") from None
    expected = hmac.new(secret, payload, hashlib.sha256).digest()[:_MAC_BYTES]
    if not dot or not hmac.compare_digest(mac, expected):
        raise Unauthorized("the ticket is not valid", code="invalid_ticket")
    user, _, rest = payload.decode().partition("|")
    ticket_scope, _, expires = rest.rpartition("|")
    if now > int(expires):
        raise Unauthorized(
            "the ticket has expired: ask for a new events_url (POST /v1/tickets)",
            code="ticket_expired",
        )
    if ticket_scope != scope:
        if scope.startswith("stream:"):
            raise StreamNotFound(f"no stream {scope.removeprefix('stream:')!r}")
        raise Unauthorized("the ticket is for another URL", code="invalid_ticket")
    return user


def load_secret(configured: str | None, data_dir: Path) -> bytes:
    """The configured secret, or one generated once and kept in ``data_dir`` (0600)."""
    if configured:
        return configured.encode()
    path = data_dir / "ticket-secret"
    make_private_dir(data_dir)
    if not create_private_file(path, secrets.token_hex(32).encode()):
        warn_if_exposed([path])
    return path.read_text().strip().encode()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    if not text or len(text) > 600:
        raise ValueError("empty or too long")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
