"""API keys of one upstream: which to use next, and which are resting.

A key refused with 401/403 is benched for a while (someone revoked it; don't
hammer the provider with it), a key that got 429 cools down for its
``Retry-After``. Keys are never logged: a short fingerprint names them.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

__all__ = ["KeyPool", "fingerprint"]


def fingerprint(key: str) -> str:
    """A name for a key in logs that does not reveal it."""
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()[:8]


@dataclass(slots=True)
class _Key:
    value: str
    resting_until: float = 0.0


class KeyPool:
    """Round-robin or random choice among the keys that are not resting.

    An upstream without keys has one pseudo-key ``""`` (no Authorization
    header), so failover treats keyless and keyed upstreams alike.
    """

    def __init__(self, keys: list[str], strategy: str = "round_robin") -> None:
        self._keys = [_Key(k) for k in keys] or [_Key("")]
        self._strategy = strategy
        self._next = 0

    def __len__(self) -> int:
        return len(self._keys)

    def choose(self, now: float, exclude: set[str]) -> str | None:
        """A key to try now, not in ``exclude`` (tried this round); None if none is ready."""
        ready = [k for k in self._keys if k.resting_until <= now and k.value not in exclude]
        if not ready:
            return None
        if self._strategy == "random":
            return random.choice(ready).value
        for _ in range(len(self._keys)):
            key = self._keys[self._next % len(self._keys)]
            self._next += 1
            if key in ready:
                return key.value
        return ready[0].value

    def rest(self, value: str, until: float) -> None:
        for key in self._keys:
            if key.value == value:
                key.resting_until = max(key.resting_until, until)

    def next_ready_at(self) -> float:
        return min(k.resting_until for k in self._keys)
