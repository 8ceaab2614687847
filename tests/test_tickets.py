"""Tickets on their own: signed, scoped, and valid for at least the lifetime promised."""

from __future__ import annotations

import pytest

from typewriter import tickets
from typewriter.errors import NotFound, Unauthorized

SECRET = b"s" * 32


@pytest.mark.parametrize("issued_at", [100.0, 100.01, 100.5, 100.99])
def test_a_ticket_lives_at_least_its_lifetime_and_at_most_a_second_more(issued_at: float) -> None:
    ticket = tickets.issue(SECRET, "usr_a", tickets.CHANNEL, issued_at + 1)
    assert tickets.verify(SECRET, ticket, tickets.CHANNEL, issued_at + 1) == "usr_a"
    with pytest.raises(Unauthorized) as expired:
        tickets.verify(SECRET, ticket, tickets.CHANNEL, issued_at + 2.001)
    assert expired.value.code == "ticket_expired"


def test_a_ticket_opens_only_its_scope_and_only_unaltered() -> None:
    scope = tickets.stream_scope("st_1")
    ticket = tickets.issue(SECRET, "usr_a", scope, 1e10)
    assert tickets.verify(SECRET, ticket, scope, 0) == "usr_a"
    with pytest.raises(NotFound):
        tickets.verify(SECRET, ticket, tickets.stream_scope("st_2"), 0)
    with pytest.raises(Unauthorized):
        tickets.verify(b"t" * 32, ticket, scope, 0)
