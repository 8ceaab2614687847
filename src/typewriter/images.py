"""Images a user sends: ``data:`` URIs read, their bytes' type known from the bytes.

The type a client declares is not trusted: a stored image is served back to the
browser, so what it is must come from its first bytes (PNG, JPEG, GIF and WebP
each begin with a fixed signature), never from a label an attacker chose.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

__all__ = ["IMAGE_TYPES", "Image", "data_uri", "read_data_uri", "sniff"]

IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")
_DATA_URI = re.compile(r"data:(image/(?:png|jpeg|gif|webp));base64,", re.ASCII)


@dataclass(frozen=True, slots=True)
class Image:
    """An image's bytes and the type they were found to be."""

    media_type: str
    data: bytes

    def uri(self) -> str:
        return data_uri(self.media_type, self.data)


def sniff(data: bytes) -> str | None:
    """The image type the bytes begin with, or None for anything else."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def read_data_uri(uri: str) -> Image:
    """A ``data:image/(png|jpeg|gif|webp);base64,…`` URI's image; ValueError saying why not.

    The bytes must be valid base64 and be an image of one of those types (their own
    signature says which, whatever the URI declared).
    """
    match = _DATA_URI.match(uri)
    if match is None:
        raise ValueError(
            f"an image must be a data:image/(png|jpeg|gif|webp);base64,… URI (got {uri[:30]!r})"
        )
    try:
        data = base64.b64decode(uri[match.end() :], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the image's base64 is not valid") from None
    media_type = sniff(data)
    if media_type is None:
        raise ValueError("the data is not a PNG, JPEG, GIF or WebP image")
    return Image(media_type, data)


def data_uri(media_type: str, data: bytes) -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode('ascii')}"
