"""Scenario: relaying a real model's stream, the path users run in production.

A minimal OpenAI-compatible model server on raw asyncio (``relay_upstream.py``, so cheap that
the gateway is what is measured) streams every answer as ``CHUNKS`` chunks at ``RATE`` per
second. The same load, ``POST /v1/chat/completions`` with ``"stream": true`` from N clients at
once, each asking answer after answer, goes in turn:

- **directly to the model server**: the reference (its own CPU per chunk, its time to first
  token);
- **through typewriter** (the in-process broker), whose assistant ``relay`` is that model;
- **through LiteLLM's proxy**, when it is installed (``make bench`` puts it in a virtual
  environment of its own, ``.venv-bench``, so its pinned versions never change the
  typewriter being measured), started with a master key and its local model cost map.

Each gateway runs alone on the server core (0); the model server and this load run on the
other (1). Per concurrency the rows are: server CPU per relayed chunk (the gateway's CPU over
the run divided by the chunks it delivered; for the direct path, the model server's own),
chunks delivered per second, time to first token p50 and p99 (from sending the request to the
first piece of text) and what the gateway adds to them over the direct path. Every answer is
checked whole: its text must be exactly the model's, else the row is marked FAILED.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from loadgen import Connection, HttpError, build_request, request
from measure import Outcome, Row, percentile
from relay_upstream import answer_text
from servers import LOAD_CORE, SERVER_CORE, cpu_seconds, free_port, raise_nofile, running

__all__ = ["FIRST_TEXT", "ask", "completions_request", "load", "run", "serve_process"]

CHUNKS = 40
RATE = 40.0
HERE = Path(__file__).resolve().parent
BENCH_VENV = HERE.parent / ".venv-bench"
DIRECT, TYPEWRITER, LITELLM = "upstream (direct)", "typewriter", "litellm"
_MASTER_KEY = "sk-relay-benchmark"
FIRST_TEXT = b'"content":"w'  # every chunk's text starts "w0001 ", "w0002 "… (relay_upstream)


@dataclass
class Answer:
    """One streamed answer as the load saw it."""

    first_text: float = 0.0  # seconds from sending the request to the first piece of text
    chunks: int = 0  # pieces of text received
    text: str = ""


@dataclass
class Result:
    answers: list[Answer] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    wall: float = 0.0
    server_cpu: float = 0.0  # the gateway's (or, direct, the model server's) CPU seconds
    upstream_cpu: float = 0.0
    load_cpu: float = 0.0


class _Stream(Connection):
    """A ``defer`` connection that also notes when the first piece of text arrives (a scan
    of the raw bytes until then: the rest is parsed after the clock stops)."""

    def __init__(self, raw: bytes) -> None:
        super().__init__(raw, "defer")
        self.sent = time.perf_counter()
        self.first_text = 0.0

    def data_received(self, data: bytes) -> None:
        if not self.first_text and FIRST_TEXT in data.replace(b'": "', b'":"'):
            self.first_text = time.perf_counter() - self.sent
        super().data_received(data)


def _read(stream: _Stream) -> Answer:
    """The answer in a finished stream: its pieces of text, in order."""
    answer = Answer(first_text=stream.first_text)
    pieces = []
    for event in stream.events():
        if event.data == "[DONE]" or not event.data:
            continue
        data = json.loads(event.data)
        for choice in data.get("choices") or []:
            content = (choice.get("delta") or {}).get("content")
            if content:
                pieces.append(content)
    answer.chunks = len(pieces)
    answer.text = "".join(pieces)
    return answer


async def ask(port: int, raw: bytes) -> Answer:
    loop = asyncio.get_running_loop()
    _, stream = await loop.create_connection(lambda: _Stream(raw), "127.0.0.1", port)
    try:
        await stream.done
    finally:
        stream.close()
    if stream.status != 200:
        raise HttpError(f"status {stream.status}: {stream.body()[:200]!r}")
    return _read(stream)


async def load(
    port: int, raw: bytes, concurrency: int, answers_each: int, server_pid: int, upstream_pid: int
) -> Result:
    """``concurrency`` clients, each asking ``answers_each`` answers one after another; their
    starts spread over one answer's length, so the load is steady rather than in waves."""
    result = Result()
    length = CHUNKS / RATE

    async def client(index: int) -> None:
        await asyncio.sleep(length * index / concurrency)
        for _ in range(answers_each):
            try:
                result.answers.append(await ask(port, raw))
            except (OSError, HttpError, ValueError) as exc:
                result.problems.append(f"{type(exc).__name__}: {exc}")

    server_cpu, upstream_cpu = cpu_seconds(server_pid), cpu_seconds(upstream_pid)
    load_cpu, started = time.process_time(), time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(concurrency)))
    result.wall = time.perf_counter() - started
    result.server_cpu = cpu_seconds(server_pid) - server_cpu
    result.upstream_cpu = cpu_seconds(upstream_pid) - upstream_cpu
    result.load_cpu = time.process_time() - load_cpu
    return result


def completions_request(port: int, model: str, key: str | None = None) -> bytes:
    body = json.dumps(
        {"model": model, "stream": True, "messages": [{"role": "user", "content": "go"}]}
    ).encode()
    headers = {"content-type": "application/json", "accept": "text/event-stream"}
    if key:
        headers["authorization"] = f"Bearer {key}"
    return build_request("POST", "/v1/chat/completions", port, body=body, headers=headers)


def _die_with_parent() -> None:
    import ctypes

    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: never outlive the run


@contextlib.asynccontextmanager
async def serve_process(
    command: list[str], core: int, port: int, ready_path: str, env: dict[str, str] | None = None
) -> AsyncIterator[subprocess.Popen[bytes]]:
    """A server process pinned to ``core``, answering ``ready_path`` with 200, stopped after."""
    log = tempfile.TemporaryFile()
    process = subprocess.Popen(
        ["taskset", "-c", str(core), *command],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
        preexec_fn=_die_with_parent,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                log.seek(0)
                tail = log.read().decode("utf-8", "replace").splitlines()[-8:]
                raise RuntimeError(f"{command[0]} exited at start: {tail}")
            with contextlib.suppress(OSError, HttpError):
                if (await request(port, "GET", ready_path)).status == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{command[0]} did not answer {ready_path} in 120 s")
            await asyncio.sleep(0.1)  # poll interval, not a readiness guess
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()


def _litellm_binary() -> Path | None:
    binary = BENCH_VENV / "bin" / "litellm"
    return binary if binary.exists() else None


@contextlib.asynccontextmanager
async def _litellm(upstream_port: int) -> AsyncIterator[tuple[int, int]]:
    """LiteLLM's proxy in front of the model server: (its port, its pid)."""
    binary = _litellm_binary()
    assert binary is not None
    folder = Path(tempfile.mkdtemp(prefix="tw-bench-litellm-"))
    config = folder / "config.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: relay\n"
        "    litellm_params:\n"
        "      model: openai/relay\n"
        f"      api_base: http://127.0.0.1:{upstream_port}/v1\n"
        "      api_key: none\n"
    )
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TYPEWRITER_")},
        "LITELLM_MASTER_KEY": _MASTER_KEY,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no download of the cost map at start
        "LITELLM_LOG": "ERROR",
        "DISABLE_ADMIN_UI": "True",
        "LITELLM_TELEMETRY": "False",
    }
    command = [str(binary), "--config", str(config), "--port", str(port), "--num_workers", "1"]
    try:
        async with serve_process(command, SERVER_CORE, port, "/health/liveliness", env) as process:
            yield port, process.pid
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _check(name: str, result: Result, expected: str, wanted: int) -> list[str]:
    problems = [f"relay {name}: {p}" for p in result.problems[:3]]
    wrong = [a for a in result.answers if a.text != expected]
    if wrong:
        problems.append(
            f"relay {name}: {len(wrong)} of {len(result.answers)} answers differ from the "
            f"model's text (first: {wrong[0].text[:80]!r})"
        )
    if len(result.answers) != wanted:
        problems.append(f"relay {name}: {len(result.answers)} answers of {wanted} came back")
    return problems


async def run(kinds: tuple[str, ...], quick: bool) -> Outcome:
    """The relay rows at 50 and 500 concurrent streams (quick: 50 and 200)."""
    del kinds  # the gateways of this scenario are its own: direct, typewriter, LiteLLM
    outcome = Outcome()
    nofile = raise_nofile()
    expected = answer_text(CHUNKS)
    # answers per client at each concurrency: enough for a steady stretch between the ramps,
    # few enough that LiteLLM's proxy (about 370 chunks/s on one core) finishes in minutes
    levels = ((50, 2), (200, 1)) if quick else ((50, 5), (500, 2))
    upstream_port = free_port()
    command = [sys.executable, str(HERE / "relay_upstream.py"), "--port", str(upstream_port)]
    command += ["--chunks", str(CHUNKS), "--rate", str(RATE)]
    if _litellm_binary() is None:
        outcome.notes.append(
            f"relay: LiteLLM is not installed in {BENCH_VENV.name} (make bench installs it): "
            "its column is n/a"
        )
    settings = {
        "TYPEWRITER_UPSTREAMS": json.dumps(
            [{"name": "model", "base_url": f"http://127.0.0.1:{upstream_port}/v1"}]
        ),
        "TYPEWRITER_ASSISTANTS": json.dumps([{"name": "relay", "model": "relay"}]),
    }
    async with serve_process(command, LOAD_CORE, upstream_port, "/healthz") as upstream:
        for concurrency, answers_each in levels:
            wanted = concurrency * answers_each
            results: dict[str, Result] = {}
            results[DIRECT] = await load(
                upstream_port,
                completions_request(upstream_port, "relay"),
                concurrency,
                answers_each,
                upstream.pid,
                upstream.pid,
            )
            async with running((TYPEWRITER,), nofile, settings) as servers:
                server = servers[TYPEWRITER]
                results[TYPEWRITER] = await load(
                    server.port,
                    completions_request(server.port, "relay"),
                    concurrency,
                    answers_each,
                    server.pid,
                    upstream.pid,
                )
                outcome.problems += [f"typewriter log: {x}" for x in server.log_problems()[:5]]
            if _litellm_binary() is not None:
                async with _litellm(upstream_port) as (port, pid):
                    results[LITELLM] = await load(
                        port,
                        completions_request(port, "relay", _MASTER_KEY),
                        concurrency,
                        answers_each,
                        pid,
                        upstream.pid,
                    )
            _rows(outcome, concurrency, results, expected, wanted)
    return outcome


def _rows(
    outcome: Outcome, concurrency: int, results: dict[str, Result], expected: str, wanted: int
) -> None:
    scenario = f"relay, {concurrency} streams × {CHUNKS} chunks at {RATE:.0f}/s"
    verified = True
    for name, result in results.items():
        problems = _check(name, result, expected, wanted)
        outcome.problems += problems
        verified = verified and not problems
    first = {name: sorted(a.first_text * 1000 for a in r.answers) for name, r in results.items()}
    chunks = {name: sum(a.chunks for a in r.answers) for name, r in results.items()}

    def row(metric: str, values: dict[str, float | None], digits: int, higher: bool) -> Row:
        return Row(scenario, metric, values, digits, verified, higher)

    outcome.rows.append(
        row(
            "server CPU per relayed chunk, µs",
            {n: r.server_cpu / max(chunks[n], 1) * 1e6 for n, r in results.items()},
            1,
            False,
        )
    )
    outcome.rows.append(
        row(
            "chunks delivered per second",
            {n: chunks[n] / r.wall for n, r in results.items()},
            0,
            True,
        )
    )
    for label, q in (("p50", 50.0), ("p99", 99.0)):
        outcome.rows.append(
            row(
                f"time to first token {label}, ms",
                {n: percentile(values, q) for n, values in first.items()},
                2,
                False,
            )
        )
        direct = percentile(first[DIRECT], q)
        outcome.rows.append(
            row(
                f"time to first token added {label}, ms (over direct)",
                {n: percentile(v, q) - direct for n, v in first.items() if n != DIRECT},
                2,
                False,
            )
        )
    for name, result in results.items():
        outcome.notes.append(
            f"{scenario}, {name}: {len(result.answers)} answers in {result.wall:.1f} s; "
            f"server CPU {result.server_cpu / result.wall:.0%}, model server "
            f"{result.upstream_cpu / result.wall:.0%} (core {LOAD_CORE}), load "
            f"{result.load_cpu / result.wall:.0%} (core {LOAD_CORE})"
        )
