"""``GET /v1/usage``: the caller's tokens per day and assistant, the base of budgets."""

from __future__ import annotations

import datetime as dt
import re
import time
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from typewriter.errors import InvalidField
from typewriter.store.usage import DayUsage

from .gateway import GatewayDep
from .routes_conversations import store_of

__all__ = ["MAX_DAYS", "router"]

DEFAULT_DAYS = 30
MAX_DAYS = 366
"""At most a year per request: one user's rows of a year are a few hundred lines at most
(days × assistants), so a response stays small whatever the client asks."""

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
router = APIRouter(prefix="/v1", tags=["usage"])


def _invalid(field: str, message: str) -> InvalidField:
    return InvalidField.of([{"field": f"query.{field}", "message": message}])


def _date(field: str, value: str | None, default: dt.date) -> dt.date:
    if value is None:
        return default
    try:
        if not _DATE.fullmatch(value):
            raise ValueError
        return dt.date.fromisoformat(value)
    except ValueError:
        raise _invalid(field, f"{value[:40]!r} is not a date YYYY-MM-DD") from None


def _window(start: str | None, end: str | None) -> tuple[dt.date, dt.date]:
    """``from`` and ``to``, both included: by default the 30 days up to today (UTC)."""
    today = dt.datetime.fromtimestamp(time.time(), dt.UTC).date()
    last = _date("to", end, today)
    first = _date("from", start, last - dt.timedelta(days=DEFAULT_DAYS - 1))
    if first > last:
        raise _invalid("from", f"{first} is after to ({last})")
    if (last - first).days + 1 > MAX_DAYS:
        raise _invalid("from", f"{(last - first).days + 1} days; at most {MAX_DAYS} at a time")
    return first, last


def _total(rows: list[DayUsage]) -> dict[str, int]:
    total = dict.fromkeys(DayUsage.COUNTS, 0)
    for row in rows:
        for name, value in row.counts().items():
            total[name] += value
    return total


@router.get("/usage")
async def usage(
    request: Request,
    gateway: GatewayDep,
    start: Annotated[str | None, Query(alias="from", max_length=100)] = None,
    end: Annotated[str | None, Query(alias="to", max_length=100)] = None,
    assistant: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
) -> dict[str, Any]:
    """The caller's answers and tokens per UTC day and assistant, from ``from`` to ``to``
    (both included; the last 30 days by default), with their total."""
    store = store_of(gateway)
    first, last = _window(start, end)
    rows = await store.usage(gateway.user_of(request), first, last, assistant)
    return {
        "object": "list",
        "from": first.isoformat(),
        "to": last.isoformat(),
        "data": [row.public() for row in rows],
        "total": _total(rows),
    }
