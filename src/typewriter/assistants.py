"""Assistants: a public name mapped to a backend, a model, a system prompt and defaults.

Clients choose an assistant, never a backend, so an operator can move an
assistant to another model without any client noticing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from typewriter.models.base import GenerationOptions, ModelBackend
from typewriter.models.simulated import SimulatedModel

__all__ = ["Assistant", "builtin_assistants"]


@dataclass(frozen=True, slots=True)
class Assistant:
    name: str
    model: str
    backend: ModelBackend
    description: str = ""
    system_prompt: str | None = None
    defaults: GenerationOptions = field(default_factory=GenerationOptions)

    def public(self) -> dict[str, object]:
        """What ``GET /v1/assistants`` shows: never the backend's credentials."""
        return {
            "name": self.name,
            "model": self.model,
            "description": self.description,
            "system_prompt": self.system_prompt,
            "defaults": {
                "temperature": self.defaults.temperature,
                "top_p": self.defaults.top_p,
                "max_tokens": self.defaults.max_tokens,
            },
        }


def builtin_assistants() -> Mapping[str, Assistant]:
    """The simulated assistants that work offline: ``default`` and ``echo``."""
    model = SimulatedModel()
    return {
        "default": Assistant(
            "default", "default", model, "A canned multi-line answer typed at a human pace."
        ),
        "echo": Assistant(
            "echo", "echo", model, "Answers with your message verbatim, a few characters at a time."
        ),
    }
