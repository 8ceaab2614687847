"""The official ``openai`` SDK reads a model's reasoning from typewriter as from DeepSeek.

``reasoning_content`` is not in OpenAI's own types: the SDK keeps such fields in the
model's extras (``model_extra``), where clients of DeepSeek and vLLM read them. A real
gateway in front of the replay upstream (``tests/replay_upstream.py``), which sends each
shape a reasoning server sends.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionChunk

from conftest import ServerFactory
from replay_upstream import replay
from upstream.control import Upstream

pytestmark = [pytest.mark.integration]

__all__ = ["replay"]  # the fixture

THOUGHT = ["Two and two ", "make four."]
ANSWER = ["It is ", "4."]


def behaviour(field: str) -> dict[str, Any]:
    return {"deltas": [{field: t} for t in THOUGHT] + [{"content": t} for t in ANSWER]}


def sdk_for(make_server: ServerFactory, upstream: Upstream, **assistant: Any) -> openai.OpenAI:
    server = make_server(
        upstreams=[{"name": "r", "base_url": upstream.base_url, "headers_timeout": 5}],
        assistants=[
            {"name": "up", "model": "reasoner", **assistant},
            {"name": "quiet", "model": "reasoner", "reasoning": "hide"},
        ],
    )
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=30)


@pytest.fixture
def upstream(replay: Upstream) -> Iterator[Upstream]:
    replay.reset()
    yield replay


def reasoning_of(delta: Any) -> str | None:
    extra = delta.model_extra or {}
    value = extra.get("reasoning_content")
    return value if value is None else str(value)


def streamed(sdk: openai.OpenAI, model: str = "up") -> list[ChatCompletionChunk]:
    with sdk.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "2+2?"}], stream=True
    ) as stream:
        return list(stream)


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_streamed_reasoning_arrives_as_reasoning_content_deltas_before_the_content(
    make_server: ServerFactory, upstream: Upstream, field: str
) -> None:
    upstream.script(behaviour(field))
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
    upstream.script({"deltas": [{"content": p} for p in ["<thi", "nk>hm</th", "ink>OK"]]})
    with sdk_for(make_server, upstream, think_tags=True) as sdk:
        chunks = streamed(sdk)
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert "".join(reasoning_of(d) or "" for d in deltas) == "hm"
    assert "".join(d.content or "" for d in deltas) == "OK"


def test_a_completion_not_streamed_has_message_reasoning_content(
    make_server: ServerFactory, upstream: Upstream
) -> None:
    upstream.script(behaviour("reasoning_content"))
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
    upstream.script(*[behaviour("reasoning_content")] * 3)
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
