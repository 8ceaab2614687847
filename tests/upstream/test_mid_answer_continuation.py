"""An answer whose upstream fails mid-way is continued by the next upstream of its chain.

Real scripted upstream processes behind a real gateway. Each test states what the listener
reads (one answer, a ``notice`` at the seam), what is stored (the same text, which upstream
wrote which part, the summed usage) and what the next upstream was asked (the text shown so
far, never the reasoning, in the form its ``prefix_style`` says).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import RunningServer, ServerFactory
from helpers import ask, data_of, follow, last, text_of
from typewriter import sse
from typewriter.assistants import build_catalog
from typewriter.config import load_settings
from typewriter.models.continuation import CONTINUE_INSTRUCTION
from upstream.control import Upstream

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

RETRY = {"deadline": 5, "backoff_initial": 0.05, "backoff_max": 0.2}
SHOWN = ["The ", "quick ", "brown ", "fox "]
REST = ["jumps ", "over ", "the ", "lazy ", "dog."]
WHOLE = "".join(SHOWN + REST)


def upstream_config(name: str, up: Upstream, **extra: Any) -> dict[str, Any]:
    return {"name": name, "base_url": up.base_url, "headers_timeout": 5, **extra}


def continuing_server(
    make_server: ServerFactory,
    ups: list[tuple[str, Upstream, dict[str, Any]]],
    **assistant: Any,
) -> RunningServer:
    """A gateway whose assistant ``up`` has model ``m`` on the upstreams ``ups`` in order."""
    return make_server(
        upstreams=[upstream_config(name, up, **extra) for name, up, extra in ups],
        assistants=[
            {
                "name": "up",
                "model": "m",
                "upstreams": [name for name, _, _ in ups],
                "idle_timeout": 0.5,
                "first_token_timeout": 2,
                **assistant,
            }
        ],
        retry=RETRY,
    )


async def answer_and_message(
    server: RunningServer, message: str = "hi"
) -> tuple[list[sse.Event], dict[str, Any]]:
    """Ask ``up``, follow the answer to its end, and read the stored answer."""
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        started = await ask(client, message, assistant="up")
        events = await follow(client, started["events_url"])
        stored = await client.get(f"/v1/conversations/{started['conversation_id']}")
        assert stored.status_code == 200, stored.text
        (answer,) = [m for m in stored.json()["messages"] if m["id"] == started["message_id"]]
        return events, answer


def names(events: list[sse.Event]) -> list[str]:
    """The event names with runs of deltas shown once."""
    shown: list[str] = []
    for event in events:
        if not (event.event == "delta" and shown and shown[-1] == "delta"):
            shown.append(event.event)
    return shown


@pytest.mark.parametrize(
    "fault",
    [
        {"drop_after_tokens": 4},
        {"error_after_tokens": 4, "error_message": "worker died"},
        {"malformed_after_tokens": 4},
        {"stall_after_tokens": 4},
    ],
    ids=["connection-cut", "error-event", "garbage", "stall"],
)
async def test_a_failure_mid_answer_is_continued_by_the_next_upstream(
    make_upstream: Callable[[], Upstream], make_server: ServerFactory, fault: dict[str, Any]
) -> None:
    first, second = make_upstream(), make_upstream()
    first.script({"tokens": SHOWN + REST, "tokens_per_second": 0, **fault})
    # Asked to continue by instruction, it first repeats the last three words shown.
    second.script({"tokens": ["quick ", "brown ", "fox ", *REST], "tokens_per_second": 0})
    server = continuing_server(make_server, [("a", first, {}), ("b", second, {})])

    events, stored = await answer_and_message(server)

    assert names(events) == ["start", "delta", "notice", "delta", "end"]
    assert data_of(next(e for e in events if e.event == "notice")) == {
        "code": "failover",
        "from": "a",
        "to": "b",
        "model": "m",
    }
    assert text_of(events) == WHOLE  # the repeated words are not shown twice
    assert last(events, "end")["finish_reason"] == "stop"
    assert stored["text"] == WHOLE and stored["finish_reason"] == "stop"
    seam = len("".join(SHOWN))
    first_part, second_part = stored["sources"]
    expected_failure = "stall" if "stall_after_tokens" in fault else "upstream_error"
    assert {k: first_part[k] for k in ("upstream", "start", "end", "failure", "gap_ms")} == {
        "upstream": "a",
        "start": 0,
        "end": seam,
        "failure": expected_failure,
        "gap_ms": None,
    }
    assert second_part["upstream"] == "b" and second_part["model"] == "m"
    assert (second_part["start"], second_part["end"], second_part["failure"]) == (
        seam,
        len(WHOLE),
        None,
    )
    assert second_part["gap_ms"] is not None and second_part["gap_ms"] >= 0

    (asked,) = second.requests()
    sent = asked["body"]["messages"]
    assert sent[-2] == {"role": "assistant", "content": "".join(SHOWN)}
    assert sent[-1] == {"role": "user", "content": CONTINUE_INSTRUCTION}
    assert "continue_final_message" not in asked["body"]


@pytest.mark.parametrize("style", ["vllm", "deepseek"])
async def test_an_upstream_that_takes_a_prefix_extends_the_partial_answer(
    make_upstream: Callable[[], Upstream], make_server: ServerFactory, style: str
) -> None:
    first, second = make_upstream(), make_upstream()
    first.script({"tokens": SHOWN + REST, "tokens_per_second": 0, "drop_after_tokens": 4})
    second.script({"tokens": REST, "tokens_per_second": 0})
    server = continuing_server(
        make_server, [("a", first, {}), ("b", second, {"prefix_style": style})]
    )

    events, stored = await answer_and_message(server)

    assert text_of(events) == WHOLE == stored["text"]
    (asked,) = second.requests()
    body = asked["body"]
    final = body["messages"][-1]
    assert final["role"] == "assistant" and final["content"] == "".join(SHOWN)
    if style == "vllm":
        assert body["continue_final_message"] is True
        assert body["add_generation_prompt"] is False
        assert "prefix" not in final
    else:
        assert final["prefix"] is True
        assert "continue_final_message" not in body


async def test_a_continuation_that_does_not_repeat_keeps_its_first_words(
    make_upstream: Callable[[], Upstream], make_server: ServerFactory
) -> None:
    """Only a repetition of at least three words is dropped: a continuation that starts
    with a word the shown text ends with ("the") is kept whole."""
    first, second = make_upstream(), make_upstream()
    first.script({"tokens": ["Look at ", "the "], "tokens_per_second": 0, "drop_after_tokens": 2})
    second.script({"tokens": ["the ", "river."], "tokens_per_second": 0})
    server = continuing_server(make_server, [("a", first, {}), ("b", second, {})])

    events, stored = await answer_and_message(server)

    assert text_of(events) == "Look at the the river." == stored["text"]


async def test_usage_is_the_sum_of_every_upstreams_count(
    make_upstream: Callable[[], Upstream], make_server: ServerFactory
) -> None:
    first, second = make_upstream(), make_upstream()
    first.script({"tokens": SHOWN + REST, "tokens_per_second": 0, "drop_after_tokens": 4})
    second.script({"tokens": REST, "tokens_per_second": 0, "usage": {"prompt_tokens": 40}})
    server = continuing_server(
        make_server,
        [("a", first, {"continuous_usage": True}), ("b", second, {"prefix_style": "vllm"})],
    )

    events, stored = await answer_and_message(server)

    # The first counted 4 tokens as it went (continuous usage), the second 40 + 5 at its end.
    (first_request,) = first.requests()
    first_prompt = sum(len(m["content"].split()) for m in first_request["body"]["messages"])
    usage = last(events, "end")["usage"]
    assert usage == {
        "prompt_tokens": first_prompt + 40,
        "completion_tokens": 4 + len(REST),
        "total_tokens": first_prompt + 40 + 4 + len(REST),
    }
    assert stored["usage"] == usage


async def test_an_upstream_that_counts_nothing_is_estimated_and_marked(
    make_upstream: Callable[[], Upstream], make_server: ServerFactory
) -> None:
    first, second = make_upstream(), make_upstream()
    first.script({"tokens": SHOWN + REST, "tokens_per_second": 0, "drop_after_tokens": 4})
    second.script({"tokens": REST, "tokens_per_second": 0, "usage": {"prompt_tokens": 40}})
    server = continuing_server(
        make_server, [("a", first, {}), ("b", second, {"prefix_style": "vllm"})]
    )

    events, _ = await answer_and_message(server)

    usage = last(events, "end")["usage"]
    assert usage["estimated"] is True
    assert usage["prompt_tokens"] > 40 and usage["completion_tokens"] > len(REST)


async def test_a_switch_is_counted_as_a_failover_and_opens_the_failed_breaker(
    make_upstream: Callable[[], Upstream], make_server: ServerFactory
) -> None:
    first, second = make_upstream(), make_upstream()
    first.script({"tokens": SHOWN + REST, "tokens_per_second": 0, "drop_after_tokens": 4})
    second.script({"tokens": REST, "tokens_per_second": 0})
    server = continuing_server(
        make_server,
        [("a", first, {"breaker_cooldown": 60, "breaker_cooldown_max": 60}), ("b", second, {})],
    )

    await answer_and_message(server)

    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        metrics = (await client.get("/metrics")).text
        ready = (await client.get("/readyz")).json()
    counted = 'typewriter_upstream_failovers_total{from_upstream="a",to_upstream="b"} 1.0'
    assert counted in metrics
    assert ready["upstreams"]["a"]["state"] == "open"  # the next answers go past it
    assert "mid-answer" in ready["upstreams"]["a"]["error"]


async def test_a_continuation_nobody_answers_ends_unavailable_with_the_first_count(
    make_upstream: Callable[[], Upstream], make_server: ServerFactory
) -> None:
    first, second = make_upstream(), make_upstream()
    first.script({"tokens": SHOWN + REST, "tokens_per_second": 0, "drop_after_tokens": 4})
    second.script({"status": 503})
    server = continuing_server(
        make_server, [("a", first, {"continuous_usage": True}), ("b", second, {})]
    )

    events, stored = await answer_and_message(server)

    assert names(events) == ["start", "delta", "error", "end"]  # no seam: nobody continued
    assert last(events, "error")["code"] == "upstream_unavailable"
    assert stored["text"] == "".join(SHOWN)
    (part,) = stored["sources"]
    assert (part["upstream"], part["failure"], part["end"]) == ("a", None, len(stored["text"]))
    usage = last(events, "end")["usage"]
    assert usage["completion_tokens"] == 4 and "estimated" not in usage  # a's own count


async def test_the_last_upstream_stalling_ends_the_answer_timeout(
    make_upstream: Callable[[], Upstream], make_server: ServerFactory
) -> None:
    first, second = make_upstream(), make_upstream()
    first.script({"tokens": SHOWN + REST, "tokens_per_second": 0, "drop_after_tokens": 2})
    second.script({"tokens": SHOWN[2:] + REST, "tokens_per_second": 0, "stall_after_tokens": 1})
    server = continuing_server(
        make_server, [("a", first, {}), ("b", second, {"prefix_style": "vllm"})]
    )

    events, stored = await answer_and_message(server)

    assert names(events) == ["start", "delta", "notice", "delta", "error", "end"]
    assert last(events, "end")["finish_reason"] == "timeout"
    assert text_of(events) == "The quick brown " == stored["text"]
    assert stored["finish_reason"] == "timeout"
    assert [s["upstream"] for s in stored["sources"]] == ["a", "b"]


async def test_continuing_off_ends_the_answer_as_before(
    make_upstream: Callable[[], Upstream], make_server: ServerFactory
) -> None:
    first, second = make_upstream(), make_upstream()
    first.script({"tokens": SHOWN + REST, "tokens_per_second": 0, "drop_after_tokens": 4})
    server = continuing_server(
        make_server, [("a", first, {}), ("b", second, {})], continue_on_failure=False
    )

    events, stored = await answer_and_message(server)

    assert names(events) == ["start", "delta", "error", "end"]
    assert last(events, "error")["code"] == "upstream_error"
    assert stored["text"] == "".join(SHOWN) and stored["finish_reason"] == "error"
    assert second.requests() == []
    assert [s["upstream"] for s in stored["sources"]] == ["a"]


async def test_past_the_switch_limit_the_next_failure_ends_the_answer(
    make_upstream: Callable[[], Upstream], make_server: ServerFactory
) -> None:
    first, second, third = make_upstream(), make_upstream(), make_upstream()
    first.script({"tokens": SHOWN + REST, "tokens_per_second": 0, "drop_after_tokens": 2})
    second.script({"tokens": SHOWN[2:] + REST, "tokens_per_second": 0, "drop_after_tokens": 2})
    server = continuing_server(
        make_server,
        [("a", first, {}), ("b", second, {"prefix_style": "vllm"}), ("c", third, {})],
        max_switches=1,
    )

    events, stored = await answer_and_message(server)

    assert names(events) == ["start", "delta", "notice", "delta", "error", "end"]
    assert last(events, "end")["finish_reason"] == "error"
    assert stored["text"] == "".join(SHOWN) == text_of(events)
    assert third.requests() == []


async def test_a_chain_continues_twice_down_to_its_last_upstream(
    make_upstream: Callable[[], Upstream], make_server: ServerFactory
) -> None:
    first, second, third = make_upstream(), make_upstream(), make_upstream()
    first.script({"tokens": SHOWN + REST, "tokens_per_second": 0, "drop_after_tokens": 2})
    second.script({"tokens": SHOWN[2:] + REST, "tokens_per_second": 0, "drop_after_tokens": 2})
    third.script({"tokens": REST, "tokens_per_second": 0})
    server = continuing_server(
        make_server,
        [("a", first, {}), ("b", second, {"prefix_style": "vllm"}), ("c", third, {})],
    )

    events, stored = await answer_and_message(server)

    notices = [data_of(e) for e in events if e.event == "notice"]
    assert [(n["from"], n["to"]) for n in notices] == [("a", "b"), ("b", "c")]
    assert text_of(events) == stored["text"] == "The quick brown fox " + "".join(REST)
    assert [(s["upstream"], s["start"], s["end"]) for s in stored["sources"]] == [
        ("a", 0, len("The quick ")),
        ("b", len("The quick "), len("The quick brown fox ")),
        ("c", len("The quick brown fox "), len(stored["text"])),
    ]
    (asked,) = third.requests()
    assert asked["body"]["messages"][-2]["content"] == "The quick brown fox "


async def test_a_tool_call_cut_mid_arguments_is_not_continued(
    make_upstream: Callable[[], Upstream], make_server: ServerFactory
) -> None:
    first, second = make_upstream(), make_upstream()
    call = {"index": 0, "id": "call_0", "type": "function"}
    chunks = [
        _chunk({"role": "assistant", "content": None, "tool_calls": [
            {**call, "function": {"name": "weather", "arguments": ""}}
        ]}),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": "Pa'}}]}),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'ris"}'}}]}),
    ]  # fmt: skip
    first.script({"chunks": chunks, "tokens_per_second": 0, "drop_after_tokens": 2})
    server = continuing_server(make_server, [("a", first, {}), ("b", second, {})])

    events, stored = await answer_and_message(server)

    assert [e.event for e in events][-2:] == ["error", "end"]
    assert "notice" not in [e.event for e in events]
    assert last(events, "end")["finish_reason"] == "error"
    assert second.requests() == []
    assert stored["finish_reason"] == "error"


async def test_the_reasoning_shown_is_kept_but_never_sent_on(
    make_upstream: Callable[[], Upstream], make_server: ServerFactory
) -> None:
    first, second = make_upstream(), make_upstream()
    chunks = [
        _chunk({"role": "assistant", "reasoning_content": "secret plan. "}),
        _chunk({"reasoning_content": "more thought."}),
        _chunk({"content": "The "}),
        _chunk({"content": "quick "}),
        _chunk({"content": "brown "}),
    ]
    first.script({"chunks": chunks, "tokens_per_second": 0, "drop_after_tokens": 4})
    second.script({"tokens": ["brown ", "fox."], "tokens_per_second": 0})
    server = continuing_server(
        make_server, [("a", first, {}), ("b", second, {"prefix_style": "vllm"})]
    )

    events, stored = await answer_and_message(server)

    assert text_of(events) == "The quick brown fox." == stored["text"]
    assert stored["reasoning"] == "secret plan. more thought."
    (asked,) = second.requests()
    assert "secret" not in json.dumps(asked["body"])
    assert asked["body"]["messages"][-1] == {"role": "assistant", "content": "The quick "}


async def test_openai_clients_see_one_answer_with_no_seam(
    make_upstream: Callable[[], Upstream], make_server: ServerFactory
) -> None:
    first, second = make_upstream(), make_upstream()
    first.script({"tokens": SHOWN + REST, "tokens_per_second": 0, "drop_after_tokens": 4})
    second.script({"tokens": REST, "tokens_per_second": 0, "finish_reason": "length"})
    server = continuing_server(
        make_server, [("a", first, {}), ("b", second, {"prefix_style": "vllm"})]
    )
    body = {
        "model": "up",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    async with (
        httpx.AsyncClient(base_url=server.url, timeout=30) as client,
        client.stream("POST", "/v1/chat/completions", json=body) as response,
    ):
        assert response.status_code == 200
        lines = [line async for line in response.aiter_lines() if line.startswith("data: ")]

    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[6:]) for line in lines[:-1]]
    assert all("error" not in c for c in chunks)
    choices = [c["choices"][0] for c in chunks if c["choices"]]
    text = "".join(c["delta"].get("content") or "" for c in choices)
    assert text == WHOLE
    assert [c["finish_reason"] for c in choices if c["finish_reason"]] == ["length"]
    (usage,) = [c["usage"] for c in chunks if c.get("usage")]
    assert usage["estimated"] is True and usage["completion_tokens"] >= len(REST)


async def test_a_fallback_model_that_wrote_the_answer_is_the_stored_model(
    make_upstream: Callable[[], Upstream], make_server: ServerFactory
) -> None:
    first, second = make_upstream(), make_upstream()
    first.script({"status": 503})
    server = make_server(
        upstreams=[upstream_config("a", first), upstream_config("b", second)],
        assistants=[
            {
                "name": "up",
                "model": "m1",
                "upstreams": ["a"],
                "fallbacks": [{"model": "m2", "upstreams": ["b"]}],
            }
        ],
        retry=RETRY,
    )

    events, stored = await answer_and_message(server)

    assert "notice" not in [e.event for e in events]  # nothing had begun: no seam
    assert stored["model"] == "m2"
    assert [(s["upstream"], s["model"]) for s in stored["sources"]] == [("b", "m2")]


def test_the_terminal_prints_one_answer_and_says_who_continued_it(
    make_upstream: Callable[[], Upstream], make_server: ServerFactory
) -> None:
    first, second = make_upstream(), make_upstream()
    first.script({"tokens": SHOWN + REST, "tokens_per_second": 0, "drop_after_tokens": 4})
    second.script({"tokens": REST, "tokens_per_second": 0})
    server = continuing_server(
        make_server, [("a", first, {}), ("b", second, {"prefix_style": "vllm"})]
    )

    done = subprocess.run(
        [sys.executable, "-m", "typewriter", "chat", "--url", server.url, "-a", "up", "hi"],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert (done.returncode, done.stdout) == (0, WHOLE + "\n")
    assert "(continued by m on b after a failed)" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_documented_continuing_chain_loads_as_written(tmp_path: Path) -> None:
    """docs/upstreams.md's example of a continued answer is a configuration that starts."""
    doc = (Path(__file__).parents[2] / "docs" / "upstreams.md").read_text()
    section = doc[doc.index("## Continuing an answer") :]
    match = re.search(r"```toml\n(.*?)```", section, re.DOTALL)
    assert match is not None
    path = tmp_path / "typewriter.toml"
    path.write_text(match.group(1))
    settings = load_settings(path)
    assert [u.prefix_style for u in settings.upstreams] == ["vllm", "none"]
    chat = build_catalog(settings).assistants["chat"]
    assert (chat.continue_on_failure, chat.max_switches) == (True, 2)


def _chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
