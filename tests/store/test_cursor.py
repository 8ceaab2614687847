"""The pagination cursor on its own: what it encodes, and which strings it refuses."""

from __future__ import annotations

import base64
import re

import pytest

from typewriter.errors import InvalidField
from typewriter.store.cursor import decode_cursor, encode_cursor


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    ("updated_at", "last_id"),
    [
        (1712345678.123456, "conv_AbCdEfGhIjKlMnOpQrStUv"),
        (0.0, "c"),
        (1e-06, "conv_-_-_"),
        (1712345678.0, "ü ☃"),
    ],
)
def test_a_cursor_decodes_to_the_key_it_was_made_from(updated_at: float, last_id: str) -> None:
    assert decode_cursor(encode_cursor(updated_at, last_id)) == (updated_at, last_id)


@pytest.mark.parametrize("length", range(1, 8))
def test_a_cursor_is_url_safe_and_unpadded(length: int) -> None:
    cursor = encode_cursor(1712345678.5, "?" * length)  # every padding length, '/' and '+' bytes
    assert re.fullmatch(r"[A-Za-z0-9_-]+", cursor), cursor


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "garbage",
        "!!!",
        b64(b"{}"),
        b64(b"[]"),
        b64(b"[1]"),
        b64(b"[1, 2, 3]"),
        b64(b'["soon", "conv_x"]'),
        b64(b'[[1], "conv_x"]'),
        b64(b"17"),
        b64(b"\xff\xfe\xfd"),
    ],
)
def test_anything_else_is_an_invalid_cursor_field(cursor: str) -> None:
    with pytest.raises(InvalidField) as raised:
        decode_cursor(cursor)
    assert raised.value.details["fields"] == [
        {"field": "cursor", "message": "not a valid pagination cursor"}
    ]
    assert "next_cursor" in raised.value.message


def test_the_error_quotes_at_most_40_characters_of_the_cursor() -> None:
    with pytest.raises(InvalidField) as raised:
        decode_cursor("x" * 39 + "!" + "y" * 1000)
    assert repr("x" * 39 + "!") in raised.value.message  # the closing quote right after "!"
