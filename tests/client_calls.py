"""Run the same call through ``Client`` or ``AsyncClient``: the tests that show both clients
give the same results, or raise the same errors, are written once and parametrized."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from typewriter.client import AsyncClient, Client, StreamEvent

Invoke = Callable[..., Any]
OnEvent = Callable[[StreamEvent], None]


def call(kind: str, url: str, method: str, *args: Any, **kwargs: Any) -> Any:
    """``method(*args, **kwargs)`` on a fresh client of ``kind`` ("sync" or "async")."""
    options = kwargs.pop("client_options", {})
    if kind == "sync":
        with Client(url, **options) as client:
            return getattr(client, method)(*args, **kwargs)

    async def run() -> Any:
        async with AsyncClient(url, **options) as client:
            return await getattr(client, method)(*args, **kwargs)

    return asyncio.run(run())


def follow(
    kind: str, url: str, target: Any, *, on_event: OnEvent | None = None, **options: Any
) -> list[StreamEvent]:
    """Every event ``follow(target)`` gives on a fresh client of ``kind``; ``on_event`` sees
    each one as it arrives (to cut the network mid-answer)."""
    after = options.pop("after", 0)
    seen: list[StreamEvent] = []
    if kind == "sync":
        with Client(url, **options) as client:
            for event in client.follow(target, after=after):
                seen.append(event)
                if on_event is not None:
                    on_event(event)
        return seen

    async def run() -> None:
        async with AsyncClient(url, **options) as client:
            async for event in client.follow(target, after=after):
                seen.append(event)
                if on_event is not None:
                    on_event(event)

    asyncio.run(run())
    return seen


both = pytest.mark.parametrize("kind", ["sync", "async"])
