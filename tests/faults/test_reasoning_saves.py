"""``kill -9`` mid-reasoning: the reasoning is kept like the text, to its last checkpoint.

A real ``typewriter serve`` process, its assistant on the scripted upstream (replaying vLLM's
``reasoning_content`` stream, paced), is killed with SIGKILL while the model is still
thinking. The next start marks the answer ``interrupted``; what the listener had seen of
the reasoning is stored, less at most about one checkpoint interval.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from helpers import ask
from replicas import Replicas
from typewriter import sse
from upstream import shapes
from upstream.control import Upstream

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

PIECE = "think. "  # 7 characters
PIECES_PER_SECOND = 20
CHECKPOINT_INTERVAL = 0.5
LOSS_MARGIN = 70  # characters: scheduling on a busy machine, the listener's own lag


async def listen(client: httpx.AsyncClient, url: str, seen: list[str]) -> None:
    """Collect the reasoning a listener receives until its server dies under it."""
    parser = sse.Parser()
    try:
        async with client.stream("GET", url) as response:
            async for chunk in response.aiter_bytes():
                for event in parser.feed(chunk):
                    if event.event == "reasoning":
                        seen.append(json.loads(event.data)["text"])
    except httpx.TransportError:
        pass  # killed mid-stream, as expected


async def test_kill_9_mid_reasoning_keeps_the_reasoning_to_its_last_checkpoint(
    replicas: Replicas, upstream: Upstream
) -> None:
    upstream.script(
        {
            "chunks": shapes.vllm_reasoning([PIECE] * 200, ["never reached"]),
            "tokens_per_second": PIECES_PER_SECOND,
        }
    )
    settings = {
        "upstreams": json.dumps([{"name": "r", "base_url": upstream.base_url}]),
        "assistants": json.dumps([{"name": "up", "model": "reasoner"}]),
        "checkpoint_interval": CHECKPOINT_INTERVAL,
    }
    replica = await replicas.start(**settings)
    seen: list[str] = []
    async with httpx.AsyncClient(base_url=replica.url, timeout=30) as client:
        started = await ask(client, "think hard", assistant="up")
        listener = asyncio.create_task(listen(client, started["events_url"], seen))
        await asyncio.sleep(2.2)
        replica.kill()
        await listener
    shown = "".join(seen)
    assert len(shown) >= PIECES_PER_SECOND * len(PIECE)  # it was well into its thinking

    replica = await replicas.start(**settings)  # marks the killed answer interrupted
    async with httpx.AsyncClient(base_url=replica.url, timeout=30) as client:
        body = (await client.get(f"/v1/conversations/{started['conversation_id']}")).json()
    answer = body["messages"][-1]
    assert answer["status"] == "interrupted" and answer["text"] == ""
    stored = answer["reasoning"] or ""
    assert shown.startswith(stored) or stored.startswith(shown)
    lost = len(shown) - len(stored)
    bound = CHECKPOINT_INTERVAL * PIECES_PER_SECOND * len(PIECE) + LOSS_MARGIN
    assert stored and lost <= bound, f"reasoning characters lost: {lost}"
