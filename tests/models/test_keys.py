"""Key choice: round robin or random among keys that are not resting."""

from __future__ import annotations

from typewriter.models.keys import KeyPool, fingerprint


def test_round_robin_skips_resting_and_tried_keys() -> None:
    pool = KeyPool(["a", "b", "c"])
    assert [pool.choose(0, set()) for _ in range(4)] == ["a", "b", "c", "a"]
    pool.rest("b", until=100)
    assert [pool.choose(50, set()) for _ in range(3)] == ["c", "a", "c"]
    assert pool.choose(50, {"a", "c"}) is None
    assert pool.choose(100, {"a", "c"}) == "b"  # rested long enough
    assert pool.next_ready_at() == 0


def test_random_uses_only_ready_keys() -> None:
    pool = KeyPool(["a", "b", "c"], "random")
    pool.rest("a", until=10)
    seen = {pool.choose(5, set()) for _ in range(200)}
    assert seen == {"b", "c"}
    pool.rest("b", until=10)
    pool.rest("c", until=20)
    assert pool.choose(5, set()) is None
    assert pool.next_ready_at() == 10


def test_an_upstream_without_keys_has_one_empty_key() -> None:
    pool = KeyPool([])
    assert len(pool) == 1 and pool.choose(0, set()) == ""


def test_fingerprints_name_keys_without_showing_them() -> None:
    assert fingerprint("sk-secret") == fingerprint("sk-secret")
    assert "secret" not in fingerprint("sk-secret")
    assert fingerprint("sk-secret") != fingerprint("sk-other")
