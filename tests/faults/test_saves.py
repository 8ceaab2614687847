"""Saving answers under faults: ``kill -9`` mid-answer, a full disk at the end, many answers.

Real processes and a real filesystem: replicas are ``typewriter serve``
subprocesses killed with SIGKILL, and the full disk is a 1 MiB tmpfs holding
the SQLite file (see ``tests/api/test_readiness.py``).
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.test_readiness import fill, small_disk
from conftest import ServerFactory, read_events
from helpers import ask, follow, text_of
from replicas import Replica, Replicas
from typewriter import sse
from typewriter.events import Delta, decode
from typewriter.store.sql import SqlStore

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

__all__ = ["small_disk"]  # the fixture, shared with the readiness tests

PIECES_PER_SECOND = 50  # echo sends 4 characters a piece: 200 characters a second
CHARS_PER_SECOND = 4 * PIECES_PER_SECOND
SLOW = {"simulate": {"tokens_per_second": PIECES_PER_SECOND}}
CHECKPOINT_INTERVAL = 0.5  # the default
LOSS_MARGIN = 60  # characters: scheduling on a busy machine, the listener's own lag


async def stored(client: httpx.AsyncClient, conversation_id: str) -> dict[str, Any]:
    body = (await client.get(f"/v1/conversations/{conversation_id}")).json()
    answer: dict[str, Any] = body["messages"][-1]
    return answer


async def listen(client: httpx.AsyncClient, url: str, shown: list[str]) -> None:
    """Collect the deltas a listener receives until its server dies under it."""
    parser = sse.Parser()
    try:
        async with client.stream("GET", url) as response:
            async for chunk in response.aiter_bytes():
                for event in parser.feed(chunk):
                    if event.event == Delta.name:
                        delta = decode(event.event, event.data)
                        assert isinstance(delta, Delta)
                        shown.append(delta.text)
    except httpx.TransportError:
        pass  # killed mid-stream, as expected


async def kill_mid_answers(
    replica: Replica, answers: int, after: float
) -> tuple[list[str], list[str]]:
    """Start ``answers`` slow answers, SIGKILL ``replica`` ``after`` seconds later; the
    conversations and what each answer's listener had received."""
    shown: list[list[str]] = [[] for _ in range(answers)]
    conversations = []
    async with httpx.AsyncClient(base_url=replica.url, timeout=30) as client:
        listeners = []
        for i in range(answers):
            started = await ask(client, "abcdefgh"[i] * 4000, assistant="echo", options=SLOW)
            conversations.append(started["conversation_id"])
            listeners.append(asyncio.create_task(listen(client, started["events_url"], shown[i])))
        await asyncio.sleep(after)
        replica.kill()
        await asyncio.gather(*listeners)
    return conversations, ["".join(parts) for parts in shown]


async def test_kill_9_loses_at_most_one_checkpoint_interval_of_text(replicas: Replicas) -> None:
    # Moments spread over two seconds, so an interval of 2 s cannot hide between them.
    moments = (1.4, 2.6, 3.1)
    answers = 5
    replica = await replicas.start()
    lost: list[int] = []
    for moment in moments:
        conversations, shown = await kill_mid_answers(replica, answers, moment)
        replica = await replicas.start()  # marks the killed answers interrupted
        async with httpx.AsyncClient(base_url=replica.url, timeout=30) as client:
            for conversation, text in zip(conversations, shown, strict=True):
                answer = await stored(client, conversation)
                assert answer["status"] == "interrupted"
                assert text.startswith(answer["text"]) or answer["text"].startswith(text)
                lost.append(len(text) - len(answer["text"]))
    bound = CHECKPOINT_INTERVAL * CHARS_PER_SECOND + LOSS_MARGIN
    assert max(lost) <= bound, f"characters lost per answer: {lost}"


def checkpoint_writes(metrics: str) -> float:
    """How many checkpoint writes the store made, whatever the operation is called."""
    pattern = r'typewriter_store_operation_seconds_count\{operation="checkpoint[^"]*"\} (\S+)'
    return sum(float(count) for count in re.findall(pattern, metrics))


async def writes_while_streaming(make_server: ServerFactory, answers: int) -> float:
    """Checkpoint writes in two seconds (four intervals) while ``answers`` answers stream."""
    server = make_server(checkpoint_interval=CHECKPOINT_INTERVAL, max_streams_per_user=answers)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        started = [
            await ask(client, "w" * 4000, assistant="echo", options=SLOW) for _ in range(answers)
        ]
        await asyncio.sleep(CHECKPOINT_INTERVAL)  # every answer is under way
        before = checkpoint_writes((await client.get("/metrics")).text)
        await asyncio.sleep(4 * CHECKPOINT_INTERVAL)
        after = checkpoint_writes((await client.get("/metrics")).text)
        for answer in started:  # every one of them was saved, not just some
            assert (await stored(client, answer["conversation_id"]))["text"]
    return after - before


async def test_one_checkpoint_write_per_interval_however_many_answers(
    make_server: ServerFactory,
) -> None:
    one = await writes_while_streaming(make_server, 1)
    fifty = await writes_while_streaming(make_server, 50)
    assert 1 <= one <= 5, one  # four intervals: four writes, give or take a tick
    assert 1 <= fifty <= 5, fifty


async def test_a_final_save_refused_by_a_full_disk_is_retried_once_there_is_room(
    small_disk: Path, make_server: ServerFactory
) -> None:
    server = make_server(data_dir=small_disk)
    fast = {"simulate": {"tokens_per_second": 250}}  # 1,000 characters a second
    question = "".join(chr(ord("a") + i % 26) for i in range(3000))
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        started = await ask(client, question, assistant="echo", options=fast)
        async with client.stream("GET", started["events_url"]) as response:
            head = await read_events(response, limit=20)  # the answer is under way
            filler = fill(small_disk)
            full_at = time.monotonic()
            rest = await read_events(response)
        ended_after = time.monotonic() - full_at
        assert rest[-1].event == "end" and text_of(head + rest) == question
        assert ended_after < 5.0  # the disk held nothing back: 3 s of text at most
        answer = await stored(client, started["conversation_id"])
        assert answer["status"] == "streaming" and len(answer["text"]) < len(question)
        assert (await client.get("/readyz")).status_code == 503  # this replica cannot save

        filler.unlink()
        async with asyncio.timeout(5):  # the next retry finds room
            while (answer := await stored(client, started["conversation_id"]))[
                "status"
            ] == "streaming":
                await asyncio.sleep(0.1)
        assert answer["status"] == "done" and answer["finish_reason"] == "stop"
        assert answer["text"] == question
        assert (await client.get("/readyz")).status_code == 200
        again = await ask(client, "after", assistant="echo")
        assert text_of(await follow(client, again["events_url"])) == "after"


async def test_a_stop_waits_only_briefly_for_an_unsaved_answer_then_the_next_start_ends_it(
    small_disk: Path, make_server: ServerFactory
) -> None:
    server = make_server(data_dir=small_disk)
    question = "q" * 400
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        started = await ask(client, question, assistant="echo", options=SLOW)
        async with client.stream("GET", started["events_url"]) as response:
            await read_events(response, limit=40)  # over half a second: checkpointed
            filler = fill(small_disk)
            await read_events(response)  # to its end, never saved
    stopping = time.monotonic()
    server.stop()
    assert time.monotonic() - stopping < 8.0  # a last try of a few seconds, not forever
    filler.unlink()

    restarted = make_server(data_dir=small_disk)
    async with httpx.AsyncClient(base_url=restarted.url, timeout=30) as client:
        answer = await stored(client, started["conversation_id"])
    assert answer["status"] == "interrupted"  # as after a crash, with its last checkpoint
    assert answer["text"] and question.startswith(answer["text"])


async def test_many_checkpoints_are_one_write_that_never_touches_a_finished_answer(
    database_url: str,
) -> None:
    store = SqlStore(database_url)
    await store.start()
    try:
        turns = [
            await store.start_turn(
                "alice",
                assistant="echo",
                model="echo",
                stream_id=f"st_{i}",
                budget_chars=1000,
                question=f"question {i}",
            )
            for i in range(3)
        ]
        await store.finish(turns[2].answer_id, "final", "stop", None, None)
        await store.checkpoint_many([(t.answer_id, f"so far {i}") for i, t in enumerate(turns)])
        texts = [(await store.get_message("alice", t.answer_id)).text for t in turns]
        assert texts == ["so far 0", "so far 1", "final"]
    finally:
        await store.close()
