"""The results as a markdown table (readable as plain text), with the run's context.

Numbers without their context are not comparable later, so the file says when,
on how many cores, with which versions and which command; and the notes carry
each measurement's CPU self-check and every problem found while verifying.

Columns are the servers' values and ratios between two of them (``Ratio``):
typewriter on the memory broker, on the Redis broker, Redis / memory, the
sse-starlette baseline, memory / sse-starlette. The closing section lists the
first ratio (Redis / memory) for every row that has both values.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import platform
from dataclasses import dataclass
from importlib import metadata

from measure import Outcome, Row

__all__ = ["Ratio", "render"]

_VERSIONS = ("typewriter", "sse-starlette", "starlette", "fastapi", "uvicorn", "uvloop", "redis")
_HEADINGS = {"typewriter": "typewriter (memory)", "typewriter+redis": "typewriter (Redis)"}


@dataclass(frozen=True)
class Ratio:
    """A column ``top / bottom`` (two server kinds), headed ``label``."""

    top: str
    bottom: str
    label: str

    def of(self, row: Row) -> float | None:
        top, bottom = row.values.get(self.top), row.values.get(self.bottom)
        if top is None or bottom is None or math.isnan(top) or math.isnan(bottom) or not bottom:
            return None
        return top / bottom


Column = str | Ratio


def _number(value: float | None, digits: int) -> str:
    if value is None:
        return "n/a"
    if math.isnan(value):
        return "-"
    return f"{value:,.{digits}f}"


def _cell(row: Row, column: Column) -> str:
    if isinstance(column, Ratio):
        ratio = column.of(row)
        return "n/a" if ratio is None else f"{ratio:.2f}x"
    cell = _number(row.values.get(column), row.digits)
    return cell if row.verified else cell + " (FAILED)"


def _table(rows: list[Row], columns: list[Column]) -> list[str]:
    head = [c.label if isinstance(c, Ratio) else _HEADINGS.get(c, c) for c in columns]
    lines = [
        "| " + " | ".join(["scenario", "metric", *head]) + " |",
        "|" + "---|" * 2 + "---:|" * len(columns),
    ]
    for row in rows:
        better = "higher" if row.higher_is_better else "lower"
        metric = f"{row.metric} ({better} is better)"
        cells = [_cell(row, column) for column in columns]
        lines.append("| " + " | ".join([row.scenario, metric, *cells]) + " |")
    return lines


def _closing(rows: list[Row], ratio: Ratio) -> list[str]:
    """Every row's ``ratio``, read out: the summary the Redis comparison asks for."""
    lines = []
    for row in rows:
        value = ratio.of(row)
        if value is None:
            continue
        better = value > 1 if row.higher_is_better else value < 1
        verdict = "same" if abs(value - 1) < 0.005 else ("better" if better else "worse")
        failed = "" if row.verified else " (FAILED verification)"
        lines.append(f"- {row.scenario}, {row.metric}: {value:.2f}x ({verdict}){failed}")
    if not lines:
        return []
    title = _HEADINGS.get(ratio.top, ratio.top), _HEADINGS.get(ratio.bottom, ratio.bottom)
    return [f"## {title[0]} / {title[1]}", "", *lines, ""]


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
    columns: list[Column],
    command: str,
    seconds: float,
    context: list[str],
) -> str:
    rows = [row for outcome in outcomes.values() for row in outcome.rows]
    notes = [note for outcome in outcomes.values() for note in outcome.notes]
    problems = [p for outcome in outcomes.values() for p in outcome.problems]
    ratios = [column for column in columns if isinstance(column, Ratio)]
    now = dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    lines = [
        "# typewriter (memory and Redis broker) vs sse-starlette: benchmark results",
        "",
        f"- date: {now}; run time {seconds:.0f} s",
        f"- command: `{command}`",
        f"- machine: nproc {os.cpu_count()}, {platform.machine()}, Linux {platform.release()}, "
        f"Python {platform.python_version()}",
        f"- versions: {_versions()}",
        *[f"- {line}" for line in context],
        "",
        *_table(rows, columns),
        "",
        "## Notes",
        "",
        *[f"- {note}" for note in notes],
        "",
        "## Problems",
        "",
        *([f"- {p}" for p in problems] or ["- none: every event verified, no errors"]),
        "",
        *(_closing(rows, ratios[0]) if ratios else []),
    ]
    return "\n".join(lines)
