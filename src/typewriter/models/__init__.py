"""Model backends: async iterators of answer pieces, stopped by closing them."""

from __future__ import annotations

from typewriter.models.base import (
    ChatMessage,
    Chunk,
    GenerationOptions,
    ModelBackend,
    ModelRequest,
    Simulation,
    Usage,
)

__all__ = [
    "ChatMessage",
    "Chunk",
    "GenerationOptions",
    "ModelBackend",
    "ModelRequest",
    "Simulation",
    "Usage",
]
