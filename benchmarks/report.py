"""The results as a markdown table (readable as plain text), with the run's context.

Numbers without their context are not comparable later, so the file says when,
on how many cores, with which versions and which command; and the notes carry
each measurement's CPU self-check and every problem found while verifying.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import platform
from importlib import metadata

from measure import Outcome, Row

__all__ = ["render"]

_VERSIONS = ("typewriter", "sse-starlette", "starlette", "fastapi", "uvicorn", "uvloop")


def _number(value: float | None, digits: int) -> str:
    if value is None:
        return "n/a"
    if math.isnan(value):
        return "-"
    return f"{value:,.{digits}f}"


def _ratio(row: Row, kinds: list[str]) -> str:
    if len(kinds) < 2:
        return "n/a"
    ours, theirs = row.values.get(kinds[0]), row.values.get(kinds[1])
    if ours is None or theirs is None or math.isnan(ours) or math.isnan(theirs) or theirs == 0:
        return "n/a"
    return f"{ours / theirs:.2f}x"


def _table(rows: list[Row], kinds: list[str]) -> list[str]:
    head = ["scenario", "metric", *kinds, f"{kinds[0]} / {kinds[1]}"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * 2 + "---:|" * (len(kinds) + 1)]
    for row in rows:
        cells = [_number(row.values.get(kind), row.digits) for kind in kinds]
        if not row.verified:
            cells = [c + " (FAILED)" for c in cells]
        better = "higher" if row.higher_is_better else "lower"
        metric = f"{row.metric} ({better} is better)"
        lines.append("| " + " | ".join([row.scenario, metric, *cells, _ratio(row, kinds)]) + " |")
    return lines


def _versions() -> str:
    found = []
    for name in _VERSIONS:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return ", ".join(found)


def render(
    outcomes: dict[str, Outcome],
    kinds: list[str],
    command: str,
    seconds: float,
    context: list[str],
) -> str:
    rows = [row for outcome in outcomes.values() for row in outcome.rows]
    notes = [note for outcome in outcomes.values() for note in outcome.notes]
    problems = [p for outcome in outcomes.values() for p in outcome.problems]
    now = dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    lines = [
        "# typewriter vs sse-starlette: benchmark results",
        "",
        f"- date: {now}; run time {seconds:.0f} s",
        f"- command: `{command}`",
        f"- machine: nproc {os.cpu_count()}, {platform.machine()}, Linux {platform.release()}, "
        f"Python {platform.python_version()}",
        f"- versions: {_versions()}",
        *[f"- {line}" for line in context],
        "",
        *_table(rows, kinds),
        "",
        "## Notes",
        "",
        *[f"- {note}" for note in notes],
        "",
        "## Problems",
        "",
        *([f"- {p}" for p in problems] or ["- none: every event verified, no errors"]),
        "",
    ]
    return "\n".join(lines)
