"""Every Chat Completions parameter a client sends reaches the upstream as sent.

The official ``openai`` SDK is the client, a real gateway sits in the middle and
the scripted upstream (``tests/upstream``) records the body it received: the
test compares that body with what the client asked for, field by field.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam
from pydantic import ValidationError

from conftest import RunningServer, ServerFactory
from refusals import refused_naming
from typewriter.upstreams import UpstreamConfig
from upstream.control import Upstream
from upstream.fixtures import Gateway

pytestmark = [pytest.mark.integration]

USER: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]
SCHEMA = {
    "type": "json_schema",
    "json_schema": {
        "name": "answer",
        "strict": True,
        "schema": {"type": "object", "properties": {"a": {"type": "string"}}},
    },
}
STANDARD: dict[str, Any] = {
    "temperature": 0.25,
    "top_p": 0.5,
    "max_tokens": 40,
    "stop": ["\n\n", "END"],
    "seed": 7,
    "presence_penalty": 0.5,
    "frequency_penalty": -1.5,
    "logit_bias": {"50256": -100, "12": 2.5},
    "logprobs": True,
    "top_logprobs": 3,
    "response_format": SCHEMA,
    "user": "someone@example.com",
}


def sdk_for(server: RunningServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=30
    ) as client:
        yield client


@pytest.fixture
def sdk(upstream: Upstream, gateway: Gateway) -> Iterator[openai.OpenAI]:
    yield from sdk_for(gateway(upstream, temperature=0.9, max_tokens=100))


@pytest.fixture
def vendor_sdk(upstream: Upstream, gateway: Gateway) -> Iterator[openai.OpenAI]:
    passed = ["top_k", "repetition_penalty", "chat_template_kwargs"]
    yield from sdk_for(gateway(upstream, upstream_settings={"pass_fields": passed}))


def received(upstream: Upstream) -> dict[str, Any]:
    body: dict[str, Any] = upstream.requests()[-1]["body"]
    return body


@pytest.mark.parametrize("stream", [False, True])
def test_standard_parameters_reach_the_upstream_exactly(
    sdk: openai.OpenAI, upstream: Upstream, stream: bool
) -> None:
    if stream:
        with sdk.chat.completions.create(
            model="up", messages=USER, stream=True, **STANDARD
        ) as chunks:
            assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    else:
        assert sdk.chat.completions.create(model="up", messages=USER, **STANDARD).choices
    body = received(upstream)
    for name, value in STANDARD.items():
        assert body.get(name) == value, name
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert "max_completion_tokens" not in body and "n" not in body


def test_max_completion_tokens_keeps_its_name_and_the_bounds(
    upstream: Upstream, gateway: Gateway
) -> None:
    server = gateway(upstream, max_tokens=100, max_tokens_limit=50)
    for sdk in sdk_for(server):
        sdk.chat.completions.create(model="up", messages=USER, max_completion_tokens=30)
        body = received(upstream)
        assert body["max_completion_tokens"] == 30 and "max_tokens" not in body
        with pytest.raises(openai.BadRequestError) as caught:
            sdk.chat.completions.create(model="up", messages=USER, max_completion_tokens=51)
        assert caught.value.param == "max_completion_tokens"
        assert len(upstream.requests()) == 1  # refused before the upstream


def test_client_stream_options_are_merged_with_the_gateways(
    sdk: openai.OpenAI, upstream: Upstream
) -> None:
    options: Any = {"include_usage": False, "continuous_usage_stats": True}
    with sdk.chat.completions.create(
        model="up", messages=USER, stream=True, stream_options=options
    ) as chunks:
        assert all(c.usage is None for c in chunks)  # the client did not ask for usage
    assert received(upstream)["stream_options"] == {
        "include_usage": True,  # the gateway needs it for its own accounting
        "continuous_usage_stats": True,
    }


# Wrong types and ranges checked before (``"seed": "7"``, ``n: 2``, …) are in
# test_openai_compat.py; these are the rules added with the parameters reaching the upstream.
BAD: list[tuple[dict[str, Any], str]] = [
    ({"logit_bias": {"1": 101}}, "logit_bias"),
    ({"logit_bias": {"one": 1}}, "logit_bias"),
    ({"top_logprobs": 3}, "top_logprobs"),  # without logprobs: true
    ({"response_format": {"type": "yaml"}}, "response_format"),
    ({"response_format": {"type": "json_schema"}}, "response_format"),
    (
        {"response_format": {"type": "json_schema", "json_schema": {"schema": {}}}},
        "response_format",
    ),
    ({"response_format": "json"}, "response_format"),
]


@pytest.mark.parametrize(("fields", "param"), BAD)
def test_a_wrong_parameter_is_refused_naming_it(
    sdk: openai.OpenAI, upstream: Upstream, fields: dict[str, Any], param: str
) -> None:
    refused_naming(sdk, upstream, {"model": "up", "messages": USER, **fields}, param)


def test_vendor_fields_pass_only_when_the_upstream_allows_them(
    vendor_sdk: openai.OpenAI, upstream: Upstream
) -> None:
    vendor = {
        "top_k": 20,
        "repetition_penalty": 1.1,
        "chat_template_kwargs": {"enable_thinking": False},
    }
    raw = vendor_sdk.chat.completions.with_raw_response.create(
        model="up", messages=USER, extra_body={**vendor, "min_p": 0.1, "metadata": {"a": "b"}}
    )
    assert raw.parse().choices[0].message.content
    body = received(upstream)
    for name, value in vendor.items():
        assert body[name] == value, name
    assert "min_p" not in body and "metadata" not in body
    assert raw.headers["x-typewriter-ignored-fields"] == "metadata, min_p"


def test_without_pass_fields_vendor_fields_are_dropped_and_named(
    sdk: openai.OpenAI, upstream: Upstream
) -> None:
    raw = sdk.chat.completions.with_raw_response.create(
        model="up", messages=USER, extra_body={"top_k": 20}
    )
    assert raw.parse().choices
    assert "top_k" not in received(upstream)
    assert raw.headers["x-typewriter-ignored-fields"] == "top_k"
    plain = sdk.chat.completions.with_raw_response.create(model="up", messages=USER)
    assert "x-typewriter-ignored-fields" not in plain.headers
    streamed = sdk.chat.completions.with_raw_response.create(
        model="up", messages=USER, stream=True, extra_body={"top_k": 20, "a\r\nb": 1}
    )
    assert streamed.headers["x-typewriter-ignored-fields"] == "top_k, 1 more"  # only plain names
    with streamed.parse() as chunks:
        assert [c for c in chunks if c.choices and c.choices[0].finish_reason == "stop"]


def test_pass_fields_cannot_name_a_field_the_gateway_sends() -> None:
    with pytest.raises(ValidationError, match="standard fields the gateway sends itself"):
        UpstreamConfig(name="u", base_url="http://127.0.0.1:1/v1", pass_fields=["top_k", "seed"])


def test_on_failover_each_upstream_gets_only_the_vendor_fields_it_takes(
    upstream: Upstream, make_server: ServerFactory
) -> None:
    """Two upstreams (the same process, two configurations): the first takes ``top_k``
    and fails with 503; the second, which does not take it, answers without it."""
    upstream.script({"status": 503})
    common = {"base_url": upstream.base_url, "headers_timeout": 5.0}
    server = make_server(
        upstreams=[
            {"name": "vllm", "pass_fields": ["top_k"], **common},
            {"name": "other", **common},
        ],
        assistants=[{"name": "up", "model": "test-model", "upstreams": ["vllm", "other"]}],
        retry={"deadline": 5, "backoff_initial": 0.05, "backoff_max": 0.2},
    )
    for sdk in sdk_for(server):
        raw = sdk.chat.completions.with_raw_response.create(
            model="up", messages=USER, seed=3, extra_body={"top_k": 5}
        )
        assert raw.parse().choices[0].message.content
        assert "x-typewriter-ignored-fields" not in raw.headers  # one upstream takes it
    first, second = (r["body"] for r in upstream.requests())
    assert (first["top_k"], first["seed"]) == (5, 3)
    assert "top_k" not in second and second["seed"] == 3
