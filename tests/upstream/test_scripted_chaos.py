"""The chaos upstream does to each request what its seeded plan says, seen from a real client.

Each fault is forced in turn (``faults=[kind]``) and met by httpx over a real connection: the
client must see exactly the planned number of content chunks and then that fault. The plan
itself must depend on the seed, the upstream's name, the key and the attempt, and on nothing
else (not the order requests arrive in).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from upstream.chaos_control import ChaosUpstream, sent_text
from upstream.chaos_schedule import FAULTS, answer_text, answer_words, plan

SEED = 18


@pytest.fixture(scope="module")
def chaos_process() -> Iterator[ChaosUpstream]:
    server = ChaosUpstream().start()
    yield server
    server.stop()


@pytest.fixture
def chaos(chaos_process: ChaosUpstream) -> ChaosUpstream:
    chaos_process.reset()
    return chaos_process


@dataclass
class Seen:
    """What a client read: the status, content deltas, other data lines, and how it ended."""

    status: int = 0
    contents: list[str] = field(default_factory=list)
    other: list[str] = field(default_factory=list)
    finish_reason: str | None = None
    done: bool = False
    failure: BaseException | None = None

    @property
    def text(self) -> str:
        return "".join(self.contents)


def ask(server: ChaosUpstream, messages: list[dict[str, Any]], read_timeout: float = 5.0) -> Seen:
    seen = Seen()
    body = {
        "model": "test-model",
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    timeout = httpx.Timeout(5.0, read=read_timeout)
    with httpx.Client(timeout=timeout, trust_env=False) as client:
        try:
            with client.stream("POST", f"{server.base_url}/chat/completions", json=body) as r:
                seen.status = r.status_code
                for line in r.iter_lines():
                    if not line.startswith("data: "):
                        continue
                    data = line[len("data: ") :]
                    if data == "[DONE]":
                        seen.done = True
                        continue
                    try:
                        payload = json.loads(data)
                    except ValueError:
                        seen.other.append(data)
                        continue
                    choices = payload.get("choices") or []
                    if not choices:
                        seen.other.append(data)
                        continue
                    content = choices[0]["delta"].get("content")
                    if content:
                        seen.contents.append(content)
                    seen.finish_reason = choices[0].get("finish_reason") or seen.finish_reason
        except httpx.HTTPError as exc:
            seen.failure = exc
    return seen


def connection_end(server: ChaosUpstream, key: str) -> str:
    """How the connection of a request for ``key`` ends, read on a raw socket: ``"reset"``
    (the kernel reports a TCP reset) or ``"closed"`` (an orderly end of stream)."""
    body = json.dumps({"model": "test-model", "messages": question(key), "stream": True})
    request = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n{body}"
    )
    assert server.port is not None
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(request.encode())
        try:
            while sock.recv(65536):
                pass
        except ConnectionResetError:
            return "reset"
    return "closed"


def question(key: str) -> list[dict[str, Any]]:
    return [{"role": "system", "content": "Answer."}, {"role": "user", "content": key}]


def key_with(fault_after: int, name: str = "u0") -> str:
    """A key whose first attempt's fault comes after at least ``fault_after`` chunks and
    before the end (so that some text precedes it and some is never sent)."""
    for i in range(1000):
        key = f"question {i}"
        p = plan(SEED, name, key, 0)
        if fault_after <= p.after < len(answer_words(SEED, key)) - 1:
            return key
    raise AssertionError("no such key")


def test_finish_sends_the_whole_answer(chaos: ChaosUpstream) -> None:
    chaos.plan(SEED, "u0", ["finish"])
    seen = ask(chaos, question("question 1"))
    assert seen.status == 200 and seen.failure is None
    assert seen.text == answer_text(SEED, "question 1")
    assert seen.finish_reason == "stop" and seen.done
    assert [json.loads(o)["usage"]["completion_tokens"] for o in seen.other] == [len(seen.contents)]
    (record,) = chaos.requests()
    assert record["completed"] and record["chaos"]["fault"] == "finish"
    assert sent_text(record) == seen.text


def test_status_is_a_503_before_any_body(chaos: ChaosUpstream) -> None:
    chaos.plan(SEED, "u0", ["status"])
    seen = ask(chaos, question("question 1"))
    assert seen.status == 503 and seen.contents == [] and not seen.done


def test_reset_breaks_the_connection_after_the_planned_chunks(chaos: ChaosUpstream) -> None:
    key = key_with(2)
    after = plan(SEED, "u0", key, 0, ["reset"]).after
    chaos.plan(SEED, "u0", ["reset"])
    seen = ask(chaos, question(key))
    assert isinstance(seen.failure, httpx.TransportError), seen.failure
    assert not seen.done and seen.finish_reason is None
    # A reset may lose what the client had not read yet: never more than was sent.
    assert answer_text(SEED, key).startswith(seen.text)
    assert len(seen.contents) <= after
    (record,) = chaos.requests()
    assert record["dropped"] is not None and not record["completed"]
    assert record["tokens_sent"] == 1 + after
    assert sent_text(record) == "".join(answer_words_deltas(key)[:after])
    # A reset indeed, not an orderly close (which is ``broken``).
    assert connection_end(chaos, key) == "reset"


def test_a_broken_body_delivers_what_was_sent_then_fails(chaos: ChaosUpstream) -> None:
    key = key_with(2)
    after = plan(SEED, "u0", key, 0, ["broken"]).after
    chaos.plan(SEED, "u0", ["broken"])
    seen = ask(chaos, question(key))
    assert isinstance(seen.failure, httpx.RemoteProtocolError), seen.failure
    assert seen.contents == answer_words_deltas(key)[:after]
    assert not seen.done and seen.finish_reason is None
    assert connection_end(chaos, key) == "closed"


def test_stall_stops_sending_and_keeps_the_connection(chaos: ChaosUpstream) -> None:
    key = key_with(2)
    after = plan(SEED, "u0", key, 0).after  # the plan's point does not depend on the kinds
    chaos.plan(SEED, "u0", ["stall"])
    seen = ask(chaos, question(key), read_timeout=0.5)
    assert isinstance(seen.failure, httpx.ReadTimeout), seen.failure
    assert seen.contents == answer_words_deltas(key)[:after]
    record = chaos.wait_for_disconnect(0)  # the connection stayed open until we left
    assert record["dropped"] is None and not record["completed"]


def test_error_event_ends_the_stream_after_the_planned_chunks(chaos: ChaosUpstream) -> None:
    key = key_with(2)
    after = plan(SEED, "u0", key, 0, ["error"]).after
    chaos.plan(SEED, "u0", ["error"])
    seen = ask(chaos, question(key))
    assert seen.status == 200 and seen.failure is None
    assert seen.contents == answer_words_deltas(key)[:after]
    assert [json.loads(o)["error"]["type"] for o in seen.other] == ["server_error"]
    assert not seen.done and seen.finish_reason is None


def test_garbage_is_a_data_line_that_is_not_json(chaos: ChaosUpstream) -> None:
    key = key_with(2)
    after = plan(SEED, "u0", key, 0, ["garbage"]).after
    chaos.plan(SEED, "u0", ["garbage"])
    seen = ask(chaos, question(key))
    assert seen.failure is None
    assert seen.contents == answer_words_deltas(key)[:after]
    assert seen.other == ["{not json"]
    assert not seen.done and seen.finish_reason is None


def answer_words_deltas(key: str) -> list[str]:
    words = answer_words(SEED, key)
    return [words[0], *(" " + w for w in words[1:])]


def test_the_same_seed_gives_the_same_schedule_whatever_the_order(chaos: ChaosUpstream) -> None:
    kinds = ["finish", "status", "error", "garbage", "broken"]
    keys = [f"question {i}" for i in range(12)]

    def run(order: list[str]) -> dict[str, tuple[str, str]]:
        chaos.reset()
        chaos.plan(SEED, "u1", kinds)
        fates: dict[str, tuple[str, str]] = {}
        for key in order:
            seen = ask(chaos, question(key))
            fates[key] = (seen.text, type(seen.failure).__name__ if seen.failure else "")
        assert {r["chaos"]["key"]: r["chaos"]["fault"] for r in chaos.requests()} == {
            key: plan(SEED, "u1", key, 0, kinds).fault for key in keys
        }
        return fates

    assert run(keys) == run(keys[::-1])
    # Another seed, another upstream name: other fates.
    assert [plan(SEED, "u1", k, 0).fault for k in keys] != [
        plan(SEED + 1, "u1", k, 0).fault for k in keys
    ]
    assert [plan(SEED, "u1", k, 0).fault for k in keys] != [
        plan(SEED, "u2", k, 0).fault for k in keys
    ]
    assert set(FAULTS) == {plan(SEED, "u1", f"q{i}", 0).fault for i in range(200)}


def test_a_second_attempt_of_a_key_has_its_own_plan(chaos: ChaosUpstream) -> None:
    chaos.plan(SEED, "u0", ["finish", "error"])
    ask(chaos, question("question 3"))
    ask(chaos, question("question 3"))
    first, second = chaos.requests()
    assert (first["chaos"]["attempt"], second["chaos"]["attempt"]) == (0, 1)
    assert second["chaos"]["fault"] == plan(SEED, "u0", "question 3", 1, ["finish", "error"]).fault


def test_a_prefix_continuation_gets_exactly_the_rest(chaos: ChaosUpstream) -> None:
    chaos.plan(SEED, "u0", ["finish"])
    full = answer_text(SEED, "question 5")
    partial = " ".join(full.split()[:4])
    seen = ask(chaos, [*question("question 5"), {"role": "assistant", "content": partial}])
    assert partial + seen.text == full
    (record,) = chaos.requests()
    assert record["chaos"]["style"] == "prefix" and record["chaos"]["partial"] == partial


def test_an_instruction_continuation_starts_fresh_and_may_repeat(chaos: ChaosUpstream) -> None:
    chaos.plan(SEED, "u0", ["finish"])
    for i in range(20):
        key = f"question {i}"
        full = answer_text(SEED, key)
        words = full.split()
        partial = " ".join(words[:5])
        instruction = {"role": "user", "content": "Continue exactly where it stopped."}
        messages = [*question(key), {"role": "assistant", "content": partial}, instruction]
        seen = ask(chaos, messages)
        repeat = plan(SEED, "u0", key, 0, ["finish"]).repeat
        repeated = " ".join(words[5 - min(repeat, 5) : 5])
        rest = " ".join(words[5:])
        assert seen.text == (f"{repeated} {rest}" if repeated else rest), (repeat, seen.text)
        assert not seen.text.startswith(" ")
