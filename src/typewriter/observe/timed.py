"""Timing a store's or a broker's operations without touching their code.

:func:`timed` wraps an object in a proxy whose coroutine methods report their
duration and failure to a callback, labelled by the method's name; everything
else (properties, plain methods, the methods named ``untimed``) is the
object's own; ``before`` runs a callback with a method's arguments before
each call (a Stop's time is noted as the cancel is asked). A failure is an
exception that is not the operation's ordinary answer: a ``TypewriterError``
below 500 (a stream not found, a ticket refused) is a reply, not a fault of the
store or the broker.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any, TypeVar, cast

from typewriter.errors import TypewriterError

__all__ = ["Report", "timed"]

T = TypeVar("T")
Report = Callable[[str, float, bool], None]
"""``(operation, seconds, failed)``."""


def timed(
    target: T,
    report: Report,
    untimed: Collection[str] = (),
    before: Mapping[str, Callable[..., None]] | None = None,
) -> T:
    """``target`` behind a proxy that reports each awaited method call to ``report``."""
    return cast(T, _Timed(target, report, frozenset(untimed), dict(before or {})))


def _is_fault(exc: Exception) -> bool:
    return not isinstance(exc, TypewriterError) or exc.status >= 500


class _Timed:
    def __init__(
        self,
        target: Any,
        report: Report,
        untimed: frozenset[str],
        before: dict[str, Callable[..., None]],
    ) -> None:
        self._target = target
        self._report = report
        self._untimed = untimed
        self._before = before

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._target, name)
        if name in self._untimed or not inspect.iscoroutinefunction(attribute):
            return attribute
        wrapped = _timing(name, attribute, self._report, self._before.get(name))
        setattr(self, name, wrapped)  # a method is wrapped once, then found directly
        return wrapped


def _timing(
    name: str,
    method: Callable[..., Awaitable[Any]],
    report: Report,
    before: Callable[..., None] | None,
) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(method)
    async def call(*args: Any, **kwargs: Any) -> Any:
        if before is not None:
            before(*args, **kwargs)
        started = time.perf_counter()
        try:
            result = await method(*args, **kwargs)
        except Exception as exc:
            report(name, time.perf_counter() - started, _is_fault(exc))
            raise
        report(name, time.perf_counter() - started, False)
        return result

    return call
