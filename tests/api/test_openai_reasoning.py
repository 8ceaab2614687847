"""The official ``openai`` SDK reads a model's reasoning from typewriter as from DeepSeek.

``reasoning_content`` is not in OpenAI's own types: the SDK keeps such fields in the
model's extras (``model_extra``), where clients of DeepSeek and vLLM read them. A real
gateway in front of the scripted upstream replaying the streams reasoning servers send
(``upstream.shapes``; ``tests/models/test_real_shapes.py`` reads every shape's content).
"""

from __future__ import annotations

from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionChunk

from conftest import ServerFactory
from upstream import shapes
from upstream.control import Upstream

pytestmark = [pytest.mark.integration]

THOUGHT = ["Two and two ", "make four."]
ANSWER = ["It is ", "4."]


SHAPES = {
    "deepseek": shapes.deepseek_reasoning(THOUGHT, ANSWER),
    "vllm reasoning": shapes.vllm_reasoning_field(THOUGHT, ANSWER),
}


def behaviour(shape: str = "deepseek") -> dict[str, Any]:
    return {"chunks": SHAPES[shape]}


def sdk_for(make_server: ServerFactory, upstream: Upstream, **assistant: Any) -> openai.OpenAI:
    server = make_server(
        upstreams=[{"name": "r", "base_url": upstream.base_url, "headers_timeout": 5}],
        assistants=[
            {"name": "up", "model": "reasoner", **assistant},
            {"name": "quiet", "model": "reasoner", "reasoning": "hide"},
        ],
    )
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=30)


def reasoning_of(delta: Any) -> str | None:
    extra = delta.model_extra or {}
    value = extra.get("reasoning_content")
    return value if value is None else str(value)


def streamed(sdk: openai.OpenAI, model: str = "up") -> list[ChatCompletionChunk]:
    with sdk.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "2+2?"}], stream=True
    ) as stream:
        return list(stream)


@pytest.mark.parametrize("shape", SHAPES)
def test_streamed_reasoning_arrives_as_reasoning_content_deltas_before_the_content(
    make_server: ServerFactory, upstream: Upstream, shape: str
) -> None:
    upstream.script(behaviour(shape))
    with sdk_for(make_server, upstream) as sdk:
        chunks = streamed(sdk)
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    thoughts = [reasoning_of(d) for d in deltas if reasoning_of(d)]
    assert thoughts == THOUGHT
    assert "".join(d.content or "" for d in deltas) == "".join(ANSWER)
    first_content = next(i for i, d in enumerate(deltas) if d.content)
    last_thought = max(i for i, d in enumerate(deltas) if reasoning_of(d))
    assert last_thought < first_content
    assert chunks[-1].choices == [] or chunks[-1].choices[0].finish_reason == "stop"


def test_think_tags_reach_the_sdk_as_reasoning_content(
    make_server: ServerFactory, upstream: Upstream
) -> None:
    upstream.script({"chunks": shapes.think_in_content("hm", "OK", [4, 10, 14])})
    with sdk_for(make_server, upstream, think_tags=True) as sdk:
        chunks = streamed(sdk)
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert "".join(reasoning_of(d) or "" for d in deltas) == "hm\n"
    assert "".join(d.content or "" for d in deltas) == "OK"


def test_a_completion_not_streamed_has_message_reasoning_content(
    make_server: ServerFactory, upstream: Upstream
) -> None:
    upstream.script(behaviour())
    with sdk_for(make_server, upstream) as sdk:
        completion = sdk.chat.completions.create(
            model="up", messages=[{"role": "user", "content": "2+2?"}]
        )
    message = completion.choices[0].message
    assert message.content == "".join(ANSWER)
    assert (message.model_extra or {}).get("reasoning_content") == "".join(THOUGHT)


def test_a_hidden_reasoning_never_reaches_the_sdk(
    make_server: ServerFactory, upstream: Upstream
) -> None:
    upstream.script(*[behaviour()] * 3)
    with sdk_for(make_server, upstream) as sdk:
        shown = streamed(sdk, "up")  # the same model, shown: it does reason
        chunks = streamed(sdk, "quiet")
        completion = sdk.chat.completions.create(
            model="quiet", messages=[{"role": "user", "content": "2+2?"}]
        )
    assert any(reasoning_of(c.choices[0].delta) for c in shown if c.choices)
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert all(reasoning_of(d) is None for d in deltas)
    assert "".join(d.content or "" for d in deltas) == "".join(ANSWER)
    message = completion.choices[0].message
    assert message.content == "".join(ANSWER)
    assert "reasoning_content" not in (message.model_extra or {})
