"""The streams real servers send, replayed by the scripted upstream (``upstream.shapes``, each
with its source), read through a real gateway by the official ``openai`` SDK: the text, the
reasoning, the tool calls, the logprobs, the usage and the ending arrive as the server meant
them, streamed and not."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import openai
import pytest

from conftest import RunningServer
from upstream import shapes
from upstream.control import Upstream
from upstream.fixtures import Gateway

pytestmark = pytest.mark.integration

CALLS = [("get_weather", shapes.split('{"city": "Paris", "unit": "°C"}', [5, 13, 27]))]


@dataclass
class Expected:
    text: str = ""
    reasoning: str = ""
    calls: list[tuple[str, str]] = field(default_factory=list)  # (name, arguments)
    finish_reason: str = "stop"
    usage: dict[str, int] | None = None  # the upstream's exact count, when it sent one


SHAPES: dict[str, tuple[list[shapes.Chunk], Expected]] = {
    "openai": (
        shapes.openai_text(["Hel", "lo ", "🎉"]),
        Expected("Hello 🎉", usage={"prompt_tokens": 9, "completion_tokens": 3}),
    ),
    "openai tool calls": (
        shapes.openai_tool_calls([*CALLS, ("get_time", ["{}"])], include_usage=True),
        Expected(calls=[("get_weather", '{"city": "Paris", "unit": "°C"}'),
                        ("get_time", "{}")], finish_reason="tool_calls"),
    ),
    "deepseek reasoner": (
        shapes.deepseek_reasoning(["Think", "ing."], ["An", "swer"]),
        Expected("Answer", "Thinking."),
    ),
    "vllm reasoning_content": (
        shapes.vllm_reasoning(["a ", "b"], ["c"]),
        Expected("c", "a b"),
    ),
    "vllm reasoning": (
        shapes.vllm_reasoning_field(["a ", "b"], ["c"]),
        Expected("c", "a b"),
    ),
    "ollama": (
        shapes.ollama_openai(["<b>", " & ok"], reasoning=["hm"],
                             calls=[("lookup", '{"q": "<x>"}')]),
        Expected("<b> & ok", "hm", [("lookup", '{"q": "<x>"}')], "tool_calls"),
    ),
    "no [DONE] after a finish reason": (shapes.no_done(["x", "y"]), Expected("xy")),
    "keep-alive comments": (shapes.keepalive_comments(["p", "q"]), Expected("pq")),
}  # fmt: skip


def _sdk(server: RunningServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


def _read_stream(sdk: openai.OpenAI) -> tuple[Expected, Any]:
    stream = sdk.chat.completions.create(
        model="up",
        messages=[{"role": "user", "content": "go"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    got, usage = Expected(finish_reason=""), None
    calls: dict[int, list[str]] = {}
    for chunk in stream:
        usage = chunk.usage or usage
        for choice in chunk.choices:
            delta = choice.delta
            got.text += delta.content or ""
            got.reasoning += (delta.model_extra or {}).get("reasoning_content") or ""
            for call in delta.tool_calls or []:
                name, arguments = calls.setdefault(call.index, ["", ""])
                function = call.function
                calls[call.index] = [
                    name + ((function.name or "") if function else ""),
                    arguments + ((function.arguments or "") if function else ""),
                ]
            got.finish_reason = choice.finish_reason or got.finish_reason
    got.calls = [(n, a) for n, a in (calls[i] for i in sorted(calls))]
    return got, usage


def _read_whole(sdk: openai.OpenAI) -> tuple[Expected, Any]:
    whole = sdk.chat.completions.create(model="up", messages=[{"role": "user", "content": "go"}])
    message = whole.choices[0].message
    got = Expected(
        message.content or "",
        (message.model_extra or {}).get("reasoning_content") or "",
        [(c.function.name, c.function.arguments) for c in message.tool_calls or []],  # type: ignore[union-attr]
        whole.choices[0].finish_reason,
    )
    return got, whole.usage


@pytest.mark.parametrize("name", SHAPES)
def test_each_shape_reads_as_the_server_meant_it(
    name: str, upstream: Upstream, gateway: Gateway
) -> None:
    chunks, expected = SHAPES[name]
    server = gateway(upstream)
    for read in (_read_stream, _read_whole):
        upstream.script({"chunks": chunks, "write_bytes": 7})  # the wire cut anywhere
        with _sdk(server) as sdk:
            got, usage = read(sdk)
        assert (got.text, got.reasoning, got.calls, got.finish_reason) == (
            expected.text,
            expected.reasoning,
            expected.calls,
            expected.finish_reason,
        ), read.__name__
        assert usage is not None
        if expected.usage is not None:
            assert (usage.prompt_tokens, usage.completion_tokens) == (
                expected.usage["prompt_tokens"],
                expected.usage["completion_tokens"],
            )


def test_logprobs_are_relayed_with_their_piece_and_gathered_when_not_streamed(
    upstream: Upstream, gateway: Gateway
) -> None:
    chunks = shapes.openai_text(["Hi", " there"], logprobs=True)
    sent = [c["choices"][0]["logprobs"] for c in chunks if isinstance(c, dict) and c["choices"]]
    sent = [p for p in sent if p is not None]
    server = gateway(upstream)
    upstream.script({"chunks": chunks})
    with _sdk(server) as sdk:
        stream = sdk.chat.completions.create(
            model="up", messages=[{"role": "user", "content": "go"}], stream=True, logprobs=True
        )
        streamed = [c.choices[0].logprobs for c in stream if c.choices and c.choices[0].logprobs]
        upstream.script({"chunks": chunks})
        whole = sdk.chat.completions.create(
            model="up", messages=[{"role": "user", "content": "go"}], logprobs=True, top_logprobs=1
        )
    assert [json.loads(p.model_dump_json(exclude_unset=True)) for p in streamed] == sent
    assert upstream.requests()[-1]["body"]["top_logprobs"] == 1
    gathered = whole.choices[0].logprobs
    assert gathered is not None and gathered.content is not None
    assert [t.token for t in gathered.content] == ["Hi", " there"]
    assert gathered.content[1].logprob == sent[1]["content"][0]["logprob"]


@pytest.mark.parametrize("style", ["openai", "openrouter", "vllm"])
def test_an_error_mid_stream_is_an_error_whoever_sent_it(
    style: str, upstream: Upstream, gateway: Gateway
) -> None:
    server = gateway(upstream)
    upstream.script({"chunks": shapes.error_mid_stream(["a", "b"], "It broke", style=style)})
    with _sdk(server) as sdk, pytest.raises(openai.APIError, match="It broke"):
        for _ in sdk.chat.completions.create(
            model="up", messages=[{"role": "user", "content": "go"}], stream=True
        ):
            pass


def test_a_stream_with_neither_finish_reason_nor_done_is_incomplete(
    upstream: Upstream, gateway: Gateway
) -> None:
    server = gateway(upstream)
    upstream.script({"chunks": shapes.no_done(["a", "b"], finish_reason=None)})
    with _sdk(server) as sdk, pytest.raises(openai.APIStatusError) as raised:
        sdk.chat.completions.create(model="up", messages=[{"role": "user", "content": "go"}])
    assert raised.value.status_code == 502
    assert "upstream_incomplete" in raised.value.response.text
