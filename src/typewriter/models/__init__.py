"""Model backends: async iterators of answer pieces, stopped by closing them."""

from __future__ import annotations

from typewriter.models.base import (
    Chunk,
    GenerationOptions,
    ModelBackend,
    ModelRequest,
    Simulation,
)

__all__ = [
    "Chunk",
    "GenerationOptions",
    "ModelBackend",
    "ModelRequest",
    "Simulation",
]
