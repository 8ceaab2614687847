"""The seam of a continued answer: repetitions of a few words removed, "the" kept, pieces
don't matter; and the continuation request for each prefix style."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from typewriter.messages import ChatMessage
from typewriter.models.continuation import (
    CONTINUE_INSTRUCTION,
    PrefixStyle,
    SeamTrimmer,
    continuation_request,
    trim_overlap,
)


def joined(shown: str, continuation: str, **options: object) -> str:
    return trim_overlap(shown, continuation, **options).join(shown, continuation)  # type: ignore[arg-type]


def streamed(shown: str, pieces: list[str], **options: object) -> str:
    trimmer = SeamTrimmer(shown, **options)  # type: ignore[arg-type]
    return shown + "".join(trimmer.feed(p) for p in pieces) + trimmer.finish()


def naive_trim(shown: str, continuation: str) -> int:
    """The longest prefix of the continuation that is a suffix of the shown text: what a
    seam without a word minimum would drop."""
    for size in range(min(len(shown), len(continuation)), 0, -1):
        if shown.endswith(continuation[:size]):
            return size
    return 0


def test_a_repetition_of_three_words_or_more_is_removed() -> None:
    assert joined("The cat sat on the", " cat sat on the mat.") == "The cat sat on the mat."
    assert joined("The cat sat on the", "sat on the mat.") == "The cat sat on the mat."
    seam = trim_overlap("I think the cat sat on the", " the cat sat on the mat")
    assert seam.overlap == " the cat sat on the"


def test_a_continuation_that_starts_with_one_or_two_shown_words_keeps_them() -> None:
    # A naive longest suffix/prefix match eats these words; the word minimum keeps them.
    assert naive_trim("The cat sat on the", "the mat.") == 3
    assert joined("The cat sat on the", "the mat.") == "The cat sat on thethe mat."
    assert naive_trim("I sat on the", "on the floor") == 6
    assert joined("I sat on the", " on the floor") == "I sat on the on the floor"
    assert trim_overlap("It is", "is").drop == 0


def test_the_longest_repetition_is_removed_not_the_first_found() -> None:
    shown = "a b a b a b a b"
    assert joined(shown, " a b a b a b a b c") == "a b a b a b a b c"


def test_a_repetition_is_looked_for_only_within_the_window() -> None:
    shown = "one two three four five six seven eight"
    continuation = " four five six seven eight nine"
    assert joined(shown, continuation, window=40) == shown + " nine"
    assert joined(shown, continuation, window=26) == shown + " nine"
    # The repetition ends at character 26: a window of 25 does not see it whole, nor a
    # window of 20 its last word; neither trims a part of it.
    assert joined(shown, continuation, window=25) == shown + continuation
    assert trim_overlap(shown, continuation, window=20).drop == 0


def test_text_in_the_continuation_that_is_not_at_its_start_is_never_trimmed() -> None:
    shown = "The cat sat on the mat"
    assert (
        joined(shown, ". The cat sat on the mat again") == shown + ". The cat sat on the mat again"
    )


def test_cjk_text_counts_two_characters_as_a_word() -> None:
    shown = "我们今天去公园散步"
    assert (
        joined(shown, "今天去公园散步，然后回家") == "我们今天去公园散步，然后回家"
    )  # 7 characters
    assert joined(shown, "去公园散步然后回家") == shown + "去公园散步然后回家"  # 5 characters: kept
    # Five kana and kanji are 2.5 words: below 3 by default, enough for a minimum of 2.
    assert joined("東京の天気は晴れ", "天気は晴れです") == "東京の天気は晴れ天気は晴れです"
    assert joined("東京の天気は晴れ", "天気は晴れです", min_words=2) == "東京の天気は晴れです"


def test_punctuation_must_match_but_whitespace_may_differ() -> None:
    shown = "Hello, world. How are"
    assert joined(shown, "world. How are you?") == "Hello, world. How are you?"
    assert joined(shown, "world, how are you?") == shown + "world, how are you?"
    # A repetition that reflows a line break into a space is still one.
    assert joined("It sat on\nthe", " sat on the mat") == "It sat on\nthe mat"


def test_a_shown_text_cut_inside_a_word_is_completed_not_doubled() -> None:
    assert joined("The very quick bro", "very quick brown fox") == "The very quick brown fox"
    assert joined("The very quick bro", " very quick brown fox") == "The very quick brown fox"
    assert joined("The very quick brown", "very quick brownie") == "The very quick brownie"


def test_spaces_at_the_seam_are_neither_doubled_nor_lost() -> None:
    assert joined("The cat sat on the ", " mat") == "The cat sat on the mat"
    assert joined("The cat sat on the ", "cat sat on the  mat") == "The cat sat on the mat"
    assert joined("First line. ", "\n\nSecond") == "First line. \n\nSecond"  # newlines kept
    # A fresh message (the instruction style) starts without the space a word needs...
    assert joined("The cat sat on the", "mat.", fresh_start=True) == "The cat sat on the mat."
    assert joined("It ended.", "Then", fresh_start=True) == "It ended. Then"
    assert joined("The cat sat on the", " mat.", fresh_start=True) == "The cat sat on the mat."
    assert joined("Say (", "hi", fresh_start=True) == "Say (hi"
    # ...while a prefix continuation carries its own spacing, even inside a word.
    assert joined("The cat sat on the m", "at.") == "The cat sat on the mat."


def test_a_first_piece_that_cannot_start_a_repetition_is_passed_on_at_once() -> None:
    trimmer = SeamTrimmer("The cat sat on the")
    assert trimmer.feed(" Meanwhile") == " Meanwhile"  # no shown word begins so
    assert trimmer.feed(",") == ","
    assert trimmer.feed(" more") == " more"
    held = SeamTrimmer("The cat sat on the")
    assert held.feed(" cat sat") == ""  # could still be a repetition
    assert held.feed(" on the mat") == " mat"
    assert held.seam is not None and held.seam.overlap == " cat sat on the"


def test_nothing_more_than_the_window_is_held_back() -> None:
    trimmer = SeamTrimmer("a b a b a b a b a b a b", window=10)
    out = "".join(trimmer.feed(c) for c in " a b a b a b")
    assert out != "" and trimmer.seam is not None


VOCABULARY = ["the", "cat", "sat", "on", "mat", " ", " ", ",", ".", "\n", "兔", "子", "bro", "wn"]
text = st.lists(st.sampled_from(VOCABULARY), max_size=30).map("".join)


@settings(max_examples=400, deadline=None)
@given(
    shown=text,
    continuation=text,
    cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=12),
    window=st.integers(min_value=1, max_value=40),
    fresh_start=st.booleans(),
)
def test_any_split_of_the_continuation_gives_the_one_shot_result(
    shown: str, continuation: str, cuts: list[int], window: int, fresh_start: bool
) -> None:
    bounds = [0, *sorted(c % (len(continuation) + 1) for c in cuts), len(continuation)]
    pieces = [continuation[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    options = {"window": window, "fresh_start": fresh_start}
    seam = trim_overlap(shown, continuation, window=window, fresh_start=fresh_start)
    trimmer = SeamTrimmer(shown, window=window, fresh_start=fresh_start)
    out = "".join(trimmer.feed(p) for p in pieces) + trimmer.finish()
    assert shown + out == seam.join(shown, continuation) == joined(shown, continuation, **options)
    assert trimmer.seam == seam


@settings(max_examples=200, deadline=None)
@given(shown=text, continuation=text, window=st.integers(min_value=1, max_value=40))
def test_byte_by_byte_equals_one_shot(shown: str, continuation: str, window: int) -> None:
    assert streamed(shown, list(continuation), window=window) == joined(
        shown, continuation, window=window
    )


@settings(max_examples=300, deadline=None)
@given(shown=text, continuation=text)
def test_only_a_repetition_and_spaces_are_ever_dropped(shown: str, continuation: str) -> None:
    seam = trim_overlap(shown, continuation)
    assert continuation.startswith(seam.overlap)
    assert continuation[len(seam.overlap) : seam.drop].strip(" \t") == ""
    # Whitespace aside, what is dropped is what the shown text ends with.
    assert "".join(shown.split()).endswith("".join(seam.overlap.split()))


MESSAGES = (
    ChatMessage(role="system", content="Be brief."),
    ChatMessage(role="user", content="Tell me a story."),
)


def test_vllm_continues_the_final_assistant_message() -> None:
    request = continuation_request(MESSAGES, "Once upon a", PrefixStyle.VLLM)
    assert request.messages == (*MESSAGES, ChatMessage(role="assistant", content="Once upon a"))
    assert request.fields == {"continue_final_message": True, "add_generation_prompt": False}
    assert request.final_message_fields == {}
    assert request.fresh_start is False


def test_deepseek_marks_the_final_assistant_message_as_a_prefix() -> None:
    request = continuation_request(list(MESSAGES), "Once upon a", PrefixStyle("deepseek"))
    assert request.messages == (*MESSAGES, ChatMessage(role="assistant", content="Once upon a"))
    assert request.fields == {}
    assert request.final_message_fields == {"prefix": True}
    assert request.fresh_start is False


def test_without_a_prefix_the_model_is_asked_to_continue() -> None:
    request = continuation_request(MESSAGES, "Once upon a", PrefixStyle.NONE)
    assert request.messages == (
        *MESSAGES,
        ChatMessage(role="assistant", content="Once upon a"),
        ChatMessage(role="user", content=CONTINUE_INSTRUCTION),
    )
    assert request.fields == {} and request.final_message_fields == {}
    assert request.fresh_start is True
    assert "without repeating" in CONTINUE_INSTRUCTION


def test_with_nothing_shown_the_request_is_the_original() -> None:
    for style in PrefixStyle:
        request = continuation_request(MESSAGES, "", style)
        assert request.messages == MESSAGES and request.fields == {}


def test_an_unknown_prefix_style_is_refused() -> None:
    with pytest.raises(ValueError):
        PrefixStyle("openai")
