"""Bad input gets a clear 4xx in the contract's shape; the server stays healthy."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from conftest import RunningServer
from helpers import ask, follow, text_of

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    error: dict[str, Any] = body["error"]
    assert isinstance(error["code"], str) and isinstance(error["message"], str)
    assert "Traceback" not in response.text and 'File "' not in response.text
    if code is not None:
        assert error["code"] == code
    return error


@pytest.fixture(autouse=True)
async def still_healthy(server: RunningServer) -> Any:
    yield
    async with httpx.AsyncClient(base_url=server.url) as client:
        assert (await client.get("/healthz")).status_code == 200
        started = await ask(client, "ok", assistant="echo")
        assert text_of(await follow(client, started["events_url"])) == "ok"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{bad json", 400, "invalid_json"),
        (b"", 400, "invalid_json"),
        (b"\xff\xfe", 400, "invalid_json"),
        (b"[" * 100_000 + b"]" * 100_000, 400, "invalid_json"),
        (b'"just a string"', 422, "invalid_field"),
        (b"{}", 422, "invalid_field"),
        (b'{"message": ""}', 422, "invalid_field"),
        (b'{"message": 42}', 422, "invalid_field"),
        (b'{"message": null}', 422, "invalid_field"),
        (b'{"message": ["a"]}', 422, "invalid_field"),
        (b'{"message": "\\ud800"}', 422, "invalid_field"),
        (b'{"message": "x", "assistant": "nope"}', 422, "invalid_field"),
        (b'{"message": "x", "assistant": 3}', 422, "invalid_field"),
        (b'{"message": "x", "surprise": 1}', 422, "invalid_field"),
        (b'{"message": "x", "conversation_id": "../etc"}', 422, "invalid_field"),
        (b'{"message": "x", "options": {"temperature": 9}}', 422, "invalid_field"),
        (b'{"message": "x", "options": {"max_tokens": 0}}', 422, "invalid_field"),
        (b'{"message": "x", "options": {"simulate": {"tokens_per_second": 0}}}', 422, None),
        (b'{"message": "x", "options": {"simulate": {"fail_after_tokens": -1}}}', 422, None),
        (b'{"message": "x", "options": {"simulate": {"speed": 1}}}', 422, None),
        (b'{"message": "x", "on_disconnect": "explode"}', 422, None),
    ],
)
async def test_bad_chat_bodies(
    client: httpx.AsyncClient, body: bytes, status: int, code: str | None
) -> None:
    response = await client.post(
        "/v1/chat", content=body, headers={"content-type": "application/json"}
    )
    assert_error(response, status, code)


async def test_invalid_fields_are_named(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/chat", json={"message": "x", "options": {"temperature": 9}})
    error = assert_error(response, 422)
    assert error["fields"][0]["field"] == "options.temperature"
    unknown = await client.post("/v1/chat", json={"message": "x", "assistant": "nope"})
    assert assert_error(unknown, 422)["fields"][0]["field"] == "assistant"
    assert "default" in unknown.json()["error"]["message"]


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
async def test_wrong_content_type_is_415(
    client: httpx.AsyncClient, content_type: str | None
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = await client.post("/v1/chat", content=b'{"message":"x"}', headers=headers)
    assert_error(response, 415, "unsupported_media_type")


async def test_body_over_a_mebibyte_is_413(client: httpx.AsyncClient) -> None:
    big = {"message": "x" * (1 << 20)}
    assert_error(await client.post("/v1/chat", json=big), 413, "payload_too_large")

    async def chunked() -> Any:
        yield b'{"message":"'
        for _ in range(1100):
            yield b"x" * 1024
        yield b'"}'

    response = await client.post(
        "/v1/chat", content=chunked(), headers={"content-type": "application/json"}
    )
    assert_error(response, 413, "payload_too_large")


async def test_a_message_of_only_whitespace_is_kept_exactly(client: httpx.AsyncClient) -> None:
    for message in [" ", "\n", " \r\n\t "]:
        started = await ask(client, message, assistant="echo")
        assert text_of(await follow(client, started["events_url"])) == message


@pytest.mark.parametrize(
    "path",
    [
        "/v1/streams/st_unknown/events",
        "/v1/streams/st_x%00y/events",
        "/v1/streams/st_..%2F..%2Fetc/events",
        "/v1/streams/%2e%2e/events",
        "/v1/streams/" + "a" * 300 + "/events",
        "/v1/streams/st_%E2%98%83/events",
    ],
)
async def test_unknown_or_malformed_stream_ids_are_404(
    client: httpx.AsyncClient, path: str
) -> None:
    assert_error(await client.get(path), 404)
    cancel = path.replace("/events", "/cancel")
    assert_error(await client.post(cancel), 404)


@pytest.mark.parametrize("value", ["abc", "-1", "1" * 30, "1.0", "0x10", "2 3"])
async def test_malformed_last_event_id_is_400(client: httpx.AsyncClient, value: str) -> None:
    started = await ask(client, "abc", assistant="echo")
    url = started["events_url"]
    assert_error(
        await client.get(url, headers={"last-event-id": value}), 400, "invalid_last_event_id"
    )
    assert_error(await client.get(url, params={"last_event_id": value}), 400)
    assert_error(await client.get("/v1/events", headers={"last-event-id": value}), 400)


async def test_last_event_id_beyond_a_running_stream_is_400(client: httpx.AsyncClient) -> None:
    started = await ask(
        client, "x" * 400, assistant="echo", options={"simulate": {"tokens_per_second": 5}}
    )
    response = await client.get(started["events_url"], headers={"last-event-id": "50"})
    assert_error(response, 400, "invalid_last_event_id")
    await client.post(f"/v1/streams/{started['stream_id']}/cancel")


async def test_unknown_paths_and_methods(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/v1/nothing"), 404, "not_found")
    assert_error(await client.delete("/v1/chat"), 405, "method_not_allowed")
