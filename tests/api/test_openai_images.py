"""Image parts through ``POST /v1/chat/completions``, with the official ``openai`` SDK.

The scripted upstream records the body it received, so the test sees the parts an
assistant that accepts images passes on, exactly; one that does not is refused them
before the upstream hears anything. A body that carries an image may pass
``max_body_bytes``, up to ``max_image_bytes``; one without an image may not.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionMessageParam

from conftest import ServerFactory
from images import png, png_uri
from upstream.control import Upstream
from upstream.fixtures import Gateway

pytestmark = [pytest.mark.integration]

URL = "https://example.com/cat.png"
PARTS: list[Any] = [
    {"type": "text", "text": "What is in "},
    {"type": "image_url", "image_url": {"url": URL}},
    {"type": "text", "text": " and in "},
    {"type": "image_url", "image_url": {"url": png_uri(), "detail": "low"}},
]


def sdk_of(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=30)


@pytest.fixture
def seeing(upstream: Upstream, gateway: Gateway) -> Iterator[openai.OpenAI]:
    with sdk_of(gateway(upstream, accepts_images=True).url) as client:
        yield client


@pytest.mark.parametrize("stream", [False, True])
def test_image_parts_reach_the_upstream_exactly(
    seeing: openai.OpenAI, upstream: Upstream, stream: bool
) -> None:
    messages: list[ChatCompletionMessageParam] = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": PARTS},
    ]
    if stream:
        with seeing.chat.completions.create(model="up", messages=messages, stream=True) as chunks:
            assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    else:
        assert seeing.chat.completions.create(model="up", messages=messages).choices
    sent = upstream.requests()[-1]["body"]["messages"]
    assert sent == [
        {"role": "system", "content": "Be brief."},  # text only: a string, as before
        {"role": "user", "content": PARTS},  # the parts, in their order, as given
    ]


def test_text_parts_alone_still_go_as_one_string(seeing: openai.OpenAI, upstream: Upstream) -> None:
    parts: Any = [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]
    seeing.chat.completions.create(model="up", messages=[{"role": "user", "content": parts}])
    assert upstream.requests()[-1]["body"]["messages"] == [{"role": "user", "content": "ab"}]


def test_an_assistant_without_images_refuses_them(upstream: Upstream, gateway: Gateway) -> None:
    with sdk_of(gateway(upstream).url) as sdk:
        models = {a["name"]: a for a in httpx.get(f"{sdk.base_url}assistants").json()["data"]}
        assert models["up"]["accepts_images"] is False
        with pytest.raises(openai.BadRequestError) as caught:
            sdk.chat.completions.create(
                model="up",
                messages=[{"role": "user", "content": "hi"}, {"role": "user", "content": PARTS}],
            )
    error = caught.value
    assert (error.status_code, error.code, error.type) == (
        400,
        "images_not_supported",
        "invalid_request_error",
    )
    assert error.param == "messages[1].content[1]"
    assert "does not accept images" in str(error.message)
    assert upstream.requests() == []


BAD_PARTS: list[tuple[Any, str]] = [
    ({"type": "image_url", "image_url": {"url": "ftp://example.com/a.png"}}, "http(s) URL"),
    ({"type": "image_url", "image_url": {"url": "data:text/plain;base64,aGk="}}, "data:image"),
    ({"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@"}}, "base64"),
    ({"type": "image_url", "image_url": {"url": "data:image/png;base64,aGVsbG8="}}, "PNG, JPEG"),
    ({"type": "image_url", "image_url": {"url": URL, "detail": "huge"}}, "detail"),
    ({"type": "image_url", "image_url": {}}, "image_url.url"),
    ({"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}, "not supported"),
]


@pytest.mark.parametrize(("part", "says"), BAD_PARTS)
def test_a_bad_part_is_refused_naming_it(
    seeing: openai.OpenAI, upstream: Upstream, part: Any, says: str
) -> None:
    body = {"model": "up", "messages": [{"role": "user", "content": [PARTS[0], part]}]}
    with pytest.raises(openai.BadRequestError) as caught:
        seeing.post("/chat/completions", body=body, cast_to=ChatCompletion)
    assert caught.value.param == "messages[0].content[1]"
    assert says in str(caught.value.message)
    assert upstream.requests() == []


def test_images_only_in_user_messages(seeing: openai.OpenAI, upstream: Upstream) -> None:
    body = {"model": "up", "messages": [{"role": "assistant", "content": PARTS}]}
    with pytest.raises(openai.BadRequestError) as caught:
        seeing.post("/chat/completions", body=body, cast_to=ChatCompletion)
    assert caught.value.param == "messages[0].content[1]"
    assert upstream.requests() == []


def test_a_body_with_an_image_may_pass_max_body_bytes(make_server: ServerFactory) -> None:
    server = make_server(max_body_bytes=8192, max_image_bytes=100_000)
    large = png_uri(png() + b"\x00" * 40_000)  # about 53 kB of JSON: over 8 kB, under 100 kB
    text = {"type": "text", "text": "look"}
    with sdk_of(server.url) as sdk:
        seen = sdk.chat.completions.create(
            model="echo",
            messages=[
                {
                    "role": "user",
                    "content": [text, {"type": "image_url", "image_url": {"url": large}}],
                }
            ],
        )
        assert seen.choices[0].message.content == "look"
        padding = [{"type": "text", "text": "x" * 4000} for _ in range(13)]  # 52 kB of text
        with pytest.raises(openai.APIStatusError) as caught:
            sdk.chat.completions.create(
                model="echo", messages=[{"role": "user", "content": padding}]
            )
        assert caught.value.status_code == 413
        assert caught.value.code == "payload_too_large"
        # an image after more than max_body_bytes of text: refused, the text alone is too much
        late: Any = [*padding, {"type": "image_url", "image_url": {"url": png_uri()}}]
        with pytest.raises(openai.APIStatusError) as caught:
            sdk.chat.completions.create(model="echo", messages=[{"role": "user", "content": late}])
        assert caught.value.status_code == 413
        # "image_url" quoted in a text part earns nothing once the body is read
        quoted: Any = [{"type": "text", "text": '"image_url"'}, *padding]
        with pytest.raises(openai.APIStatusError) as caught:
            sdk.chat.completions.create(
                model="echo", messages=[{"role": "user", "content": quoted}]
            )
        assert caught.value.status_code == 413
        # an image early in the body earns room for itself only, not for text beside it
        early: Any = [{"type": "image_url", "image_url": {"url": png_uri()}}, *padding]
        by_url: Any = [{"type": "image_url", "image_url": {"url": "https://x.test/a.png"}}]
        for content in (early, [*by_url, *padding]):
            with pytest.raises(openai.APIStatusError) as caught:
                sdk.chat.completions.create(
                    model="echo", messages=[{"role": "user", "content": content}]
                )
            assert caught.value.status_code == 413
            assert "besides its images" in str(caught.value.message)
        huge = png_uri(png() + b"\x00" * 120_000)
        with pytest.raises(openai.APIStatusError) as caught:
            sdk.chat.completions.create(
                model="echo",
                messages=[
                    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": huge}}]}
                ],
            )
        assert caught.value.status_code == 413
        assert "max_image_bytes" in str(caught.value.message)
