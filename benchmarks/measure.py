"""What every scenario shares: result rows, percentiles, and CPU accounting.

The CPU window is the benchmark's self-check. A figure is only a server's figure
if the load process was not itself saturated; so each measurement records the
server's CPU time (``/proc``) and this process's CPU time over the same wall
time, and the report prints both next to the numbers.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from servers import Server

__all__ = ["CpuWindow", "Outcome", "Row", "percentile"]


@dataclass
class Row:
    """One line of the table: a metric for each server (None = not applicable)."""

    scenario: str
    metric: str
    values: Mapping[str, float | None]
    digits: int = 0
    verified: bool = True
    higher_is_better: bool = True


@dataclass
class Outcome:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


class CpuWindow:
    """CPU used by one server and by this process between construction and ``stop``."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.wall = time.perf_counter()
        self.server_cpu = server.cpu_seconds()
        self.load_cpu = time.process_time()
        self.server_share = 0.0
        self.load_share = 0.0

    def stop(self) -> CpuWindow:
        wall = max(time.perf_counter() - self.wall, 1e-9)
        self.server_share = (self.server.cpu_seconds() - self.server_cpu) / wall
        self.load_share = (time.process_time() - self.load_cpu) / wall
        return self

    def describe(self) -> str:
        return f"server CPU {self.server_share:.0%}, load CPU {self.load_share:.0%}"


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of already sorted values."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]
