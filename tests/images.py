"""Small real images for tests, made with the standard library: a PNG any browser draws."""

from __future__ import annotations

import base64
import struct
import zlib

__all__ = ["png", "png_uri"]


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def png(width: int = 4, height: int = 3, rgb: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    """A ``width`` × ``height`` PNG of one colour (8-bit RGB, no filter)."""
    row = b"\x00" + bytes(rgb) * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(row * height)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", pixels)
        + _chunk(b"IEND", b"")
    )


def png_uri(data: bytes | None = None) -> str:
    return "data:image/png;base64," + base64.b64encode(data or png()).decode("ascii")
