"""The documented estimate: by Unicode category, no tokenizer, no download."""

from __future__ import annotations

from typewriter.token_estimate import MESSAGE_OVERHEAD, estimate_prompt_tokens, estimate_tokens


def test_the_rule_in_the_docs() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("hello") == 2  # 5 letters: one per 4 of a word, rounded up
    assert estimate_tokens("hello world") == 4  # whitespace is free
    assert estimate_tokens("Hi, you!") == 4  # a token per punctuation mark
    assert estimate_tokens("日本語") == 3  # one per wide character
    assert estimate_tokens("été 2024") == 2  # letters and digits of any script
    assert estimate_tokens("🙂") == 1


def test_a_prompt_counts_each_messages_framing() -> None:
    assert estimate_prompt_tokens(["hello", ""]) == 2 + 2 * MESSAGE_OVERHEAD
