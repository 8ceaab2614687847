"""What the server keeps, read through the API: the terminal tests' other half."""

from __future__ import annotations

import json
from typing import Any

import httpx

__all__ = ["conversations", "pace", "stored", "words"]


def words(count: int, tag: str = "w") -> str:
    """Plain words Markdown leaves as they are: the screen shows them as sent."""
    return " ".join(f"{tag}{i:03d}" for i in range(count))


def pace(tokens_per_second: float) -> str:
    """``--options`` for the simulated model's pace (echo types 4 characters a piece)."""
    return json.dumps({"simulate": {"tokens_per_second": tokens_per_second}})


def conversations(url: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{url}/v1/conversations", timeout=10)
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


def stored(url: str, conversation_id: str) -> list[dict[str, Any]]:
    """The conversation's messages as the server keeps them, oldest first."""
    response = httpx.get(f"{url}/v1/conversations/{conversation_id}", timeout=10)
    assert response.status_code == 200, response.text
    messages: list[dict[str, Any]] = response.json()["messages"]
    return messages
