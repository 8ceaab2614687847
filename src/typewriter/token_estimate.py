"""A token count for answers the model never counted: documented, offline, marked estimated.

An answer that ends early (Stop, a timeout, an error, the gateway's own length
limit, a server shutdown) gets no ``usage`` from an upstream that only counts at
the end. Its usage is then estimated here, and the usage object says so with
``"estimated": true``.

No tokenizer ships with the gateway: the real ones either download their
vocabularies at run time (tiktoken) or are model-specific. The estimate is by
Unicode category, close to what BPE tokenizers do on average:

- CJK ideographs, kana, hangul and other wide letters: 1 token per character;
- other letters and digits: 1 token per 4 characters of a run;
- every punctuation mark or symbol: 1 token; whitespace: free (it joins the next word).

Prompt tokens are estimated from the messages sent, plus 4 per message for the
chat template's framing (OpenAI's documented overhead).
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Iterable

__all__ = ["estimate_prompt_tokens", "estimate_tokens"]

MESSAGE_OVERHEAD = 4
"""Tokens the chat template adds around each message (role, separators)."""

_CHARS_PER_TOKEN = 4


def _wide(char: str) -> bool:
    return unicodedata.east_asian_width(char) in ("W", "F")


def estimate_tokens(text: str) -> int:
    """Tokens ``text`` is likely to be: see the module docstring for the rule."""
    tokens = 0
    run = 0  # letters and digits of the current word
    for char in text:
        category = unicodedata.category(char)
        if category[0] in "LN" and not _wide(char):
            run += 1
            continue
        tokens += math.ceil(run / _CHARS_PER_TOKEN)
        run = 0
        if category[0] == "Z" or char in "\t\n\r":
            continue
        tokens += 1  # a wide letter, a mark of punctuation, a symbol
    return tokens + math.ceil(run / _CHARS_PER_TOKEN)


def estimate_prompt_tokens(contents: Iterable[str]) -> int:
    """The prompt's tokens: each message's text plus its framing."""
    return sum(estimate_tokens(text) + MESSAGE_OVERHEAD for text in contents)
