"""The history budget on its own: the newest turns that fit, and always the question.

Which answer stands for a regenerated question needs rows, so ``test_sql`` covers it.
"""

from __future__ import annotations

from typewriter.messages import ChatMessage
from typewriter.store.history import within_budget

QUESTION = ChatMessage("user", "four")
PRIOR = [
    ChatMessage("user", "one"),
    ChatMessage("assistant", "ONE"),
    ChatMessage("user", "two"),
    ChatMessage("assistant", "TWO"),
]


def contents(history: tuple[ChatMessage, ...]) -> list[str]:
    return [message.content for message in history]


def test_all_of_it_when_it_fits() -> None:
    assert within_budget(PRIOR, QUESTION, 1000) == (*PRIOR, QUESTION)
    assert within_budget([], QUESTION, 1000) == (QUESTION,)


def test_a_turn_that_fits_exactly_is_kept() -> None:
    budget = len("TWO") + len("four")
    assert contents(within_budget(PRIOR, QUESTION, budget)) == ["TWO", "four"]
    assert contents(within_budget(PRIOR, QUESTION, budget - 1)) == ["four"]


def test_the_oldest_go_first_and_nothing_older_than_a_gap() -> None:
    prior = [ChatMessage("user", "a"), ChatMessage("assistant", "x" * 100), *PRIOR[2:]]
    budget = len("a") + len("two") + len("TWO") + len("four")  # room for "a" but not for "x"*100
    assert contents(within_budget(prior, QUESTION, budget)) == ["two", "TWO", "four"]


def test_the_question_is_kept_even_over_budget() -> None:
    long = ChatMessage("user", "q" * 50)
    assert within_budget(PRIOR, long, 10) == (long,)
    assert within_budget(PRIOR, long, 0) == (long,)
