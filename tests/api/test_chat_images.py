"""Images with ``POST /v1/chat``: stored with the question, shown as metadata with the
conversation, served to their owner as images only, and refused to an assistant that
does not read them (nothing recorded)."""

from __future__ import annotations

import json

import httpx
import pytest

from conftest import RunningServer, ServerFactory
from helpers import follow, text_of
from images import png, png_uri

pytestmark = [pytest.mark.anyio, pytest.mark.integration]
HISTORY = {"simulate": {"tokens_per_second": 100_000, "echo_history": True}}


@pytest.fixture
def server(make_server: ServerFactory, database_url: str) -> RunningServer:
    return make_server(
        database_url=database_url,
        max_body_bytes=8192,
        max_image_bytes=200_000,
        history_budget_chars=100_000,  # the first answer quotes the image in full
    )


async def test_an_image_is_asked_stored_and_served(server: RunningServer) -> None:
    image = png(16, 16) + b"\x00" * 20_000  # over max_body_bytes once in base64
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        assistants = {a["name"]: a for a in (await client.get("/v1/assistants")).json()["data"]}
        assert (assistants["echo"]["accepts_images"], assistants["default"]["accepts_images"]) == (
            True,
            False,
        )
        body = {
            "message": "what is it?",
            "assistant": "echo",
            "images": [{"data_url": png_uri(image)}],
            "options": HISTORY,
        }
        started = (await client.post("/v1/chat", json=body)).json()
        received = json.loads(text_of(await follow(client, started["events_url"])))
        assert received == [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is it?"},
                    {"type": "image_url", "image_url": {"url": png_uri(image)}},
                ],
            }
        ]
        conversation = await client.get(f"/v1/conversations/{started['conversation_id']}")
        question = conversation.json()["messages"][0]
        assert len(json.dumps(question)) < 2000  # metadata only, never the bytes
        (attachment,) = question["attachments"]
        assert attachment["media_type"] == "image/png" and attachment["size"] == len(image)
        served = await client.get(attachment["url"])
        assert served.status_code == 200 and served.content == image
        assert served.headers["content-type"] == "image/png"
        assert served.headers["x-content-type-options"] == "nosniff"
        assert "sandbox" in served.headers["content-security-policy"]
        assert served.headers["cache-control"] == "private, no-store"
        missing = await client.get("/v1/attachments/att_nothere")
        assert (missing.status_code, missing.json()["error"]["code"]) == (
            404,
            "attachment_not_found",
        )

        # the same conversation asked of the default assistant: its history has no image
        asked = await client.post(
            "/v1/chat",
            json={
                "message": "and you?",
                "assistant": "default",
                "conversation_id": started["conversation_id"],
                "options": HISTORY,
            },
        )
        seen = json.loads(text_of(await follow(client, asked.json()["events_url"])))
        assert seen[0] == {"role": "user", "content": "what is it?"}


async def test_images_are_refused_to_an_assistant_that_does_not_read_them(
    server: RunningServer,
) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        body = {"message": "see", "assistant": "default", "images": [{"data_url": png_uri()}]}
        refused = await client.post("/v1/chat", json=body)
        assert refused.status_code == 422
        assert refused.json()["error"]["fields"][0]["field"] == "images"
        assert "does not accept images" in refused.json()["error"]["message"]
        bad = await client.post(
            "/v1/chat",
            json={"message": "see", "assistant": "echo", "images": [{"data_url": "data:,hi"}]},
        )
        assert bad.status_code == 422
        assert bad.json()["error"]["fields"][0]["field"] == "images.0.data_url"
        text = await client.post("/v1/chat", json={"message": "x" * 9000, "assistant": "echo"})
        assert text.status_code == 413  # no image: max_body_bytes holds
        beside = {"message": "x" * 9000, "assistant": "echo", "images": [{"data_url": png_uri()}]}
        text = await client.post("/v1/chat", json=beside)
        assert text.status_code == 413  # an image earns room for itself, not for the text
        listed = (await client.get("/v1/conversations")).json()["data"]
        assert listed == []  # nothing was recorded
