"""The official ``openai`` SDK against typewriter: models, completions, errors, Stop.

The SDK is the judge of compatibility: if it parses our chunks, maps our
errors to its exceptions and closes our streams the way it closes OpenAI's,
tools built on it work too.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionMessageParam

from conftest import RunningServer, ServerFactory, read_events
from helpers import JSON, data_of, last, text_of
from typewriter import sse
from typewriter.models.simulated import CANNED_ANSWER, echo_pieces

pytestmark = [pytest.mark.integration]

MESSAGE = "Hello,\r\nworld!\n\n🎉 emoji, 什么是SSE? \r done"
USER: list[ChatCompletionMessageParam] = [{"role": "user", "content": MESSAGE}]
QUICKLY = 1.5  # seconds; the default assistant's answer takes about 3 s to type


@pytest.fixture
def sdk(server: RunningServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=30
    ) as client:
        yield client


def streamed(sdk: openai.OpenAI, **kwargs: Any) -> list[ChatCompletionChunk]:
    with sdk.chat.completions.create(stream=True, **kwargs) as stream:
        return list(stream)


def text_of_chunks(chunks: list[ChatCompletionChunk]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_models_are_the_assistants(sdk: openai.OpenAI) -> None:
    models = sdk.models.list().data
    assert {m.id for m in models} == {"default", "echo"}
    assert all(m.object == "model" and m.owned_by == "typewriter" for m in models)
    assert all(isinstance(m.created, int) for m in models)
    assert sdk.models.retrieve("echo").id == "echo"
    with pytest.raises(openai.NotFoundError) as caught:
        sdk.models.retrieve("nope")
    assert caught.value.code == "model_not_found"


def test_streamed_and_unstreamed_answers_are_the_message_exactly(sdk: openai.OpenAI) -> None:
    raw = sdk.chat.completions.with_raw_response.create(model="echo", messages=USER)
    assert raw.headers["x-stream-id"].startswith("st_")  # a typewriter stream like any other
    assert raw.headers["content-type"] == "application/json"
    whole = raw.parse()
    assert isinstance(whole, ChatCompletion)
    assert whole.object == "chat.completion" and whole.id.startswith("chatcmpl-")
    assert whole.model == "echo"
    choice = whole.choices[0]
    assert (choice.index, choice.finish_reason, choice.message.role) == (0, "stop", "assistant")
    assert choice.message.content == MESSAGE

    chunks = streamed(sdk, model="echo", messages=USER)
    assert text_of_chunks(chunks) == MESSAGE
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")
    assert all(c.object == "chat.completion.chunk" and c.model == "echo" for c in chunks)
    assert all(len(c.choices) == 1 and c.choices[0].index == 0 for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks][-2:] == [None, "stop"]
    assert all(c.usage is None for c in chunks)  # no usage chunk unless asked for


def test_include_usage_adds_a_final_usage_chunk(sdk: openai.OpenAI) -> None:
    chunks = streamed(sdk, model="echo", messages=USER, stream_options={"include_usage": True})
    *answer, final = chunks
    assert text_of_chunks(answer) == MESSAGE
    assert final.choices == [] and final.usage is not None
    assert all(c.usage is None for c in answer)
    usage = final.usage
    assert usage.completion_tokens == len(echo_pieces(MESSAGE))
    assert usage.prompt_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    whole = sdk.chat.completions.create(model="echo", messages=USER)
    assert whole.usage == usage


def test_system_message_and_history_reach_the_model(sdk: openai.OpenAI) -> None:
    history: list[Any] = [
        {"role": "system", "content": "You answer briefly."},
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "first answer"},
        {
            "role": "user",
            "content": [{"type": "text", "text": "second, "}, {"type": "text", "text": "in parts"}],
        },
    ]
    full = sdk.chat.completions.create(model="echo", messages=history)
    alone = sdk.chat.completions.create(model="echo", messages=history[-1:])
    assert full.choices[0].message.content == alone.choices[0].message.content == "second, in parts"
    assert full.usage and alone.usage
    assert full.usage.prompt_tokens > alone.usage.prompt_tokens  # the history was counted
    last_system: list[Any] = [*history, {"role": "developer", "content": "a developer note"}]
    echoed = sdk.chat.completions.create(model="echo", messages=last_system)
    assert echoed.choices[0].message.content == "a developer note"


def test_token_limits_end_with_length(sdk: openai.OpenAI) -> None:
    cut = sdk.chat.completions.create(model="default", messages=USER, max_tokens=2)
    assert cut.choices[0].finish_reason == "length"
    assert cut.usage and cut.usage.completion_tokens == 2
    assert CANNED_ANSWER.startswith(cut.choices[0].message.content or "?")
    chunks = streamed(sdk, model="echo", messages=USER, max_completion_tokens=3)
    assert text_of_chunks(chunks) == "".join(echo_pieces(MESSAGE)[:3])
    assert chunks[-1].choices[0].finish_reason == "length"


@pytest.mark.anyio
async def test_async_sdk_streams(server: RunningServer) -> None:
    async with openai.AsyncOpenAI(
        base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=30
    ) as client:
        stream = await client.chat.completions.create(
            model="echo",
            messages=USER,
            stream=True,
        )
        async with stream:
            chunks = [chunk async for chunk in stream]
    assert text_of_chunks(chunks) == MESSAGE
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_a_failing_model_is_an_error_streamed_or_not(make_server: ServerFactory) -> None:
    server = make_server(total_timeout=0.3)  # the default answer needs about 3 s
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0) as sdk:
        with pytest.raises(openai.InternalServerError) as caught:
            sdk.chat.completions.create(model="default", messages=USER)
        assert caught.value.status_code == 504
        assert (caught.value.type, caught.value.code) == ("server_error", "upstream_timeout")
        with pytest.raises(openai.APIError) as mid_stream:
            streamed(sdk, model="default", messages=USER)
        assert mid_stream.value.code == "upstream_timeout"


BAD_BODIES: list[tuple[dict[str, Any], type[openai.APIStatusError], str | None]] = [
    ({"model": "echo"}, openai.BadRequestError, "messages"),
    ({"messages": USER}, openai.BadRequestError, "model"),
    ({"model": "echo", "messages": []}, openai.BadRequestError, "messages"),
    ({"model": "echo", "messages": "hi"}, openai.BadRequestError, "messages"),
    ({"model": "echo", "messages": ["hi"]}, openai.BadRequestError, "messages[0]"),
    (
        {"model": "echo", "messages": [{"role": "robot", "content": "x"}]},
        openai.BadRequestError,
        "messages[0].role",
    ),
    (
        {"model": "echo", "messages": [{"role": "tool", "content": "x"}]},
        openai.BadRequestError,
        "messages[0].tool_call_id",
    ),
    (
        {"model": "echo", "messages": [{"role": "user"}]},
        openai.BadRequestError,
        "messages[0].content",
    ),
    (
        {"model": "echo", "messages": [{"role": "user", "content": 42}]},
        openai.BadRequestError,
        "messages[0].content",
    ),
    (
        {
            "model": "echo",
            "messages": [
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}
            ],
        },
        openai.BadRequestError,
        "messages[0].content[0]",  # an image's URL must be http(s) or a data: URI
    ),
    ({"model": "echo", "messages": USER, "temperature": 5}, openai.BadRequestError, "temperature"),
    (
        {"model": "echo", "messages": USER, "temperature": "hot"},
        openai.BadRequestError,
        "temperature",
    ),
    ({"model": "echo", "messages": USER, "top_p": 0}, openai.BadRequestError, "top_p"),
    ({"model": "echo", "messages": USER, "n": 2}, openai.BadRequestError, "n"),
    ({"model": "echo", "messages": USER, "max_tokens": 0}, openai.BadRequestError, "max_tokens"),
    (
        {"model": "echo", "messages": USER, "max_completion_tokens": 0},
        openai.BadRequestError,
        "max_completion_tokens",
    ),
    ({"model": "echo", "messages": USER, "stream": "yes"}, openai.BadRequestError, "stream"),
    ({"model": "echo", "messages": USER, "stop": 3}, openai.BadRequestError, "stop"),
    ({"model": 3, "messages": USER}, openai.BadRequestError, "model"),
    ({"model": "nope", "messages": USER}, openai.NotFoundError, "model"),
]


@pytest.mark.parametrize(("body", "error", "param"), BAD_BODIES)
def test_invalid_requests_raise_the_sdks_4xx_errors(
    sdk: openai.OpenAI, body: dict[str, Any], error: type[openai.APIStatusError], param: str
) -> None:
    with pytest.raises(error) as caught:
        sdk.post("/chat/completions", body=body, cast_to=ChatCompletion)
    assert caught.value.type == "invalid_request_error"
    assert caught.value.param == param
    assert isinstance(caught.value.code, str) and caught.value.message
    still_answers = sdk.chat.completions.create(model="echo", messages=USER)
    assert still_answers.choices[0].message.content == MESSAGE


def test_unknown_fields_are_ignored(sdk: openai.OpenAI) -> None:
    whole = sdk.chat.completions.create(
        model="echo",
        messages=USER,
        temperature=0.2,
        top_p=0.9,
        n=1,
        stop=["\n\n"],
        user="someone",
        seed=7,
        presence_penalty=0.5,
        frequency_penalty=-0.5,
        logprobs=False,
        extra_body={"tools_we_never_heard_of": [1, 2], "metadata": {"a": "b"}},
    )
    assert whole.choices[0].message.content == MESSAGE


def openai_error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert "Traceback" not in response.text
    error: dict[str, Any] = body["error"]
    return error


@pytest.mark.parametrize(
    ("content", "headers", "status", "code"),
    [
        (b"{bad json", JSON, 400, "invalid_json"),
        (b"", JSON, 400, "invalid_json"),
        (
            json.dumps(
                {"model": "echo", "messages": [{"role": "user", "content": "\ud800"}]}
            ).encode(),
            JSON,
            400,
            "invalid_field",
        ),
        (
            json.dumps({"model": "echo", "messages": USER}).encode(),
            {"content-type": "text/plain"},
            415,
            "unsupported_media_type",
        ),
        (b"{" + b" " * (1 << 20) + b"}", JSON, 413, "payload_too_large"),
    ],
)
def test_raw_bad_bodies_get_openai_errors(
    server: RunningServer, content: bytes, headers: dict[str, str], status: int, code: str
) -> None:
    response = httpx.post(f"{server.url}/v1/chat/completions", content=content, headers=headers)
    error = openai_error_of(response, status)
    assert (error["type"], error["code"]) == ("invalid_request_error", code)


def test_wrong_method_gets_an_openai_error(server: RunningServer) -> None:
    error = openai_error_of(httpx.get(f"{server.url}/v1/chat/completions"), 405)
    assert error["type"] == "invalid_request_error"


def test_other_paths_keep_the_contract_error_shape(server: RunningServer) -> None:
    response = httpx.post(f"{server.url}/v1/chat", json={})
    assert response.status_code == 422
    assert set(response.json()["error"]) >= {"code", "message", "fields"}
    assert "type" not in response.json()["error"]
    missing = httpx.get(f"{server.url}/v1/nope").json()["error"]
    assert set(missing) == {"code", "message"}


def test_closing_a_streamed_completion_stops_the_model(
    server: RunningServer, sdk: openai.OpenAI
) -> None:
    stream = sdk.chat.completions.create(model="default", messages=USER, stream=True)
    stream_id = stream.response.headers["x-stream-id"]
    head = [next(stream) for _ in range(3)]
    assert text_of_chunks(head)
    stream.close()  # what `break` out of the loop or a dropped client does
    closed_at = time.monotonic()
    # Followed to its end, which comes at once if the close stopped the model.
    replay = httpx.get(f"{server.url}/v1/streams/{stream_id}/events", timeout=30)
    assert time.monotonic() - closed_at < QUICKLY, "the answer kept generating"
    events = sse.Parser().feed(replay.content)
    assert last(events, "end")["finish_reason"] == "cancelled"
    assert CANNED_ANSWER.startswith(text_of(events)) and text_of(events) != CANNED_ANSWER


@pytest.mark.anyio
async def test_a_client_leaving_an_unstreamed_completion_stops_the_model(
    server: RunningServer,
) -> None:
    body = {"model": "default", "messages": USER}
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.post(
                "/v1/chat/completions", json=body, timeout=httpx.Timeout(30, read=0.5)
            )
        left_at = time.monotonic()
        # Its X-Stream-Id never arrived: find the stream on the user's channel.
        async with client.stream("GET", "/v1/events?last_event_id=0") as channel:
            events: list[sse.Event] = []
            async with asyncio.timeout(10):
                while not events or events[-1].event != "end":
                    events += await read_events(channel, limit=1)
        assert time.monotonic() - left_at < QUICKLY, "the answer kept generating"
    assert last(events, "end")["finish_reason"] == "cancelled"
    assert len({data_of(e)["stream_id"] for e in events if e.event != "connected"}) == 1
    assert text_of(events) and text_of(events) != CANNED_ANSWER


async def both_started(server: RunningServer) -> None:
    """Two answers started, as the user's channel shows them."""
    async with (
        httpx.AsyncClient(base_url=server.url, timeout=30) as client,
        client.stream("GET", "/v1/events?last_event_id=0") as channel,
    ):
        starts = 0
        async with asyncio.timeout(10):
            while starts < 2:
                starts += [e.event for e in await read_events(channel, limit=1)].count("start")


@pytest.mark.anyio
async def test_shutdown_tells_openai_clients_the_answer_was_cut(server: RunningServer) -> None:
    """They cannot resume elsewhere, so an unfinished answer must not look finished."""
    async with openai.AsyncOpenAI(
        base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=30
    ) as client:
        waiting = asyncio.create_task(
            client.chat.completions.create(model="default", messages=USER)
        )
        stream = await client.chat.completions.create(
            model="default",
            messages=USER,
            stream=True,
        )
        async with stream:
            head = [await anext(aiter(stream)) for _ in range(2)]
            await both_started(server)  # the unstreamed one too: stop cuts both
            await asyncio.to_thread(server.stop)
            with pytest.raises(openai.APIError) as cut:
                async for chunk in stream:
                    assert chunk.choices and chunk.choices[0].finish_reason is None
        with pytest.raises(openai.InternalServerError) as refused:
            await waiting
    assert head[0].choices[0].delta.role == "assistant"
    assert cut.value.code == "interrupted"
    assert (refused.value.status_code, refused.value.code) == (503, "interrupted")
