"""The <think> splitter: leading tag only, tags split anywhere, nothing held but a tag prefix."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from typewriter.models.base import Chunk
from typewriter.models.think_tags import CLOSE, OPEN, ThinkSplitter, split_think_tags


def _split(pieces: list[str]) -> tuple[str, str]:
    splitter = ThinkSplitter()
    reasoning: list[str] = []
    text: list[str] = []
    for piece in pieces:
        out = splitter.feed(piece)
        reasoning.append(out.reasoning)
        text.append(out.text)
    end = splitter.close()
    return "".join(reasoning) + end.reasoning, "".join(text) + end.text


def _cut(content: str, points: list[int]) -> list[str]:
    bounds = [0, *sorted(points), len(content)]
    return [content[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


FULL = "\n<think>\nLet me see: 2+2.\n</think>\n\nIt is 4."


def test_a_leading_think_block_is_reasoning_and_the_rest_is_the_answer() -> None:
    assert _split([FULL]) == ("Let me see: 2+2.\n", "It is 4.")


def test_every_split_point_of_both_tags_gives_the_same_result() -> None:
    opening = FULL.index(OPEN)
    closing = FULL.index(CLOSE)
    points = [opening + i for i in range(len(OPEN) + 1)]
    points += [closing + i for i in range(len(CLOSE) + 1)]
    for a in points:
        assert _split(_cut(FULL, [a])) == _split([FULL]), a
        for b in points:
            if b > a:
                assert _split(_cut(FULL, [a, b])) == _split([FULL]), (a, b)


def test_one_character_at_a_time() -> None:
    assert _split(list(FULL)) == _split([FULL])


def test_only_a_possible_tag_prefix_is_held_back() -> None:
    splitter = ThinkSplitter()
    assert splitter.feed("<thi").reasoning == "" and splitter.feed("nk>Hmm </th").reasoning == (
        "Hmm "
    )
    assert splitter.feed("ere").reasoning == "</there"  # not the tag after all: out at once
    after = splitter.feed("</think>Yes")
    assert after.reasoning == "" and after.text == "Yes"
    assert splitter.feed(" <think>no</think>").text == " <think>no</think>"


def test_text_without_a_leading_tag_is_never_held() -> None:
    splitter = ThinkSplitter()
    assert splitter.feed("Hello ").text == "Hello "
    assert splitter.feed("<think>quoted</think>").text == "<think>quoted</think>"
    assert splitter.feed("<thi").text == "<thi"


def test_a_tag_later_in_the_answer_stays_text() -> None:
    assert _split(["Use <think> tags: <think>x</think>"]) == (
        "",
        "Use <think> tags: <think>x</think>",
    )


def test_an_unclosed_think_is_all_reasoning() -> None:
    assert _split(["<think>still thinking </thi"]) == ("still thinking </thi", "")


def test_a_lone_closing_tag_is_text() -> None:
    assert _split(["reasoning</think>answer"]) == ("", "reasoning</think>answer")


def test_a_held_prefix_that_never_completes_is_text() -> None:
    assert _split(["  <thin"]) == ("", "  <thin")
    assert _split(["  ", "\n"]) == ("", "  \n")
    assert _split(["  <thin", "g>"]) == ("", "  <thing>")


def test_empty_reasoning_and_empty_answer() -> None:
    assert _split(["<think></think>"]) == ("", "")
    assert _split(["<think>", "</think>", "  ", "\n", "A"]) == ("", "A")


@given(st.text(alphabet="<>/thinkab \n", max_size=40), st.lists(st.integers(0, 60)))
def test_any_cut_gives_the_result_of_the_whole(content: str, points: list[int]) -> None:
    cuts = [p for p in points if p <= len(content)]
    assert _split(_cut(content, cuts)) == _split([content])


@given(st.text(alphabet="<>/thinkab \n", max_size=40))
def test_nothing_is_lost_or_made_up(content: str) -> None:
    reasoning, text = _split(list(content))
    stripped = content.lstrip()
    if stripped.startswith(OPEN):
        inner = stripped[len(OPEN) :].lstrip()
        if CLOSE in inner:
            head, _, tail = inner.partition(CLOSE)
            assert (reasoning, text) == (head, tail.lstrip())
        else:
            assert (reasoning, text) == (inner, "")
    else:
        assert (reasoning, text) == ("", content)


@given(st.text(alphabet="<>/thinkab", min_size=1, max_size=40))
def test_reasoning_is_held_back_by_less_than_a_closing_tag(body: str) -> None:
    splitter = ThinkSplitter()
    splitter.feed(OPEN)
    sent = ""
    for index, char in enumerate(body):
        sent += splitter.feed(char).reasoning
        seen = body[: index + 1]
        if CLOSE in seen:
            break
        assert len(seen) - len(sent) < len(CLOSE)


async def _model(pieces: list[str], closed: list[bool]) -> AsyncGenerator[Chunk, None]:
    try:
        for piece in pieces:
            yield Chunk(text=piece)
        yield Chunk(finish_reason="stop")
    finally:
        closed.append(True)


@pytest.mark.anyio
async def test_the_chunk_wrapper_moves_the_reasoning_and_keeps_the_ending() -> None:
    closed: list[bool] = []
    chunks = [
        c async for c in split_think_tags(_model(["<th", "ink>Hm", "m</thi", "nk>\n\nOK"], closed))
    ]
    assert "".join(c.reasoning for c in chunks) == "Hmm"
    assert "".join(c.text for c in chunks) == "OK"
    assert chunks[-1].finish_reason == "stop" and closed == [True]


@pytest.mark.anyio
async def test_an_unclosed_think_at_the_finish_is_reasoning_and_a_held_prefix_text() -> None:
    chunks = [c async for c in split_think_tags(_model(["<think>still </th"], []))]
    assert "".join(c.reasoning for c in chunks) == "still </th"
    held = [c async for c in split_think_tags(_model(["  <thi"], []))]
    assert "".join(c.text for c in held) == "  <thi" and held[-1].finish_reason == "stop"


@pytest.mark.anyio
async def test_closing_the_wrapper_closes_the_model() -> None:
    closed: list[bool] = []
    wrapped = split_think_tags(_model(["<think>a", "b", "c"], closed))
    first = await wrapped.__anext__()
    assert first.reasoning == "a"
    await wrapped.aclose()
    assert closed == [True]
