"""What survives a killed process, and what a down database looks like from outside."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from conftest import ServerFactory
from helpers import ask, follow, text_of
from replicas import Replicas

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


async def stored_answer(client: httpx.AsyncClient, conversation_id: str) -> dict[str, Any]:
    body = (await client.get(f"/v1/conversations/{conversation_id}")).json()
    answer: dict[str, Any] = body["messages"][-1]
    return answer


async def test_sigkill_mid_answer_leaves_it_interrupted_with_its_text(
    database_url: str, replicas: Replicas
) -> None:
    settings = {"database_url": database_url, "checkpoint_interval": 0.2}
    first = await replicas.start(**settings)
    slow = {"simulate": {"tokens_per_second": 20}}
    async with httpx.AsyncClient(base_url=first.url, timeout=30) as client:
        started = await ask(client, "z" * 400, assistant="echo", options=slow)
        shown = await follow(client, started["events_url"], limit=12)
        async with asyncio.timeout(20):  # until a checkpoint holds some of what was shown
            while not (await stored_answer(client, started["conversation_id"]))["text"]:
                await asyncio.sleep(0.05)
    first.kill()
    second = await replicas.start(**settings)
    async with httpx.AsyncClient(base_url=second.url, timeout=30) as client:
        answer = await stored_answer(client, started["conversation_id"])
    assert answer["status"] == "interrupted"
    assert answer["text"] and "z" * len(answer["text"]) == answer["text"]
    assert len(text_of(shown)) <= len(answer["text"]) + 4 * 5  # at most one checkpoint behind


async def test_a_database_outage_is_a_503_and_heals_by_itself(
    make_server: ServerFactory, postgres_url: str, postgres_server: Any
) -> None:
    server = make_server(database_url=postgres_url)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        assert (await client.get("/v1/conversations")).status_code == 200
        postgres_server.stop()
        try:
            down = await client.get("/v1/conversations")
            assert down.status_code == 503
            assert down.json()["error"]["code"] == "store_unavailable"
            assert "Traceback" not in down.text
            asked = await client.post("/v1/chat", json={"message": "hi", "assistant": "echo"})
            assert asked.status_code == 503
            ready = await client.get("/readyz")
            assert ready.status_code == 503 and ready.json()["checks"]["store"] is False
            assert (await client.get("/healthz")).status_code == 200
        finally:
            postgres_server.start()
        async with asyncio.timeout(30):
            while (await client.get("/readyz")).status_code != 200:
                await asyncio.sleep(0.1)
        started = await ask(client, "back", assistant="echo")
        assert text_of(await follow(client, started["events_url"])) == "back"
