"""What every scenario shares: result rows, percentiles, and CPU accounting.

The CPU window is the benchmark's self-check. A figure is only a server's figure
if the load process was not itself saturated; so each measurement records the
server's CPU time (``/proc``) and this process's CPU time over the same wall
time, and the report prints both next to the numbers. For the Redis kind the
redis-server shares the server core, so its CPU time over the same window is
recorded as well: server and redis-server together can use at most 100%. And
since the machine may be shared, the server core's busy time (``/proc/stat``)
minus what our processes used says how much other processes took from it
(in 10 ms ticks, so it is printed only for windows of a second or more).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from servers import SERVER_CORE, Server

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
    """CPU used by one server (and its redis-server) and by this process until ``stop``."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.wall = time.perf_counter()
        self.server_cpu = server.cpu_seconds()
        self.redis_cpu = server.redis.cpu_seconds() if server.redis is not None else 0.0
        self.load_cpu = time.process_time()
        self.core_busy = _core_busy_seconds(SERVER_CORE)
        self.server_share = 0.0
        self.redis_share: float | None = None  # None: no redis-server behind this server
        self.load_share = 0.0
        self.others_share: float | None = None  # None: window too short to tell

    def stop(self) -> CpuWindow:
        wall = max(time.perf_counter() - self.wall, 1e-9)
        self.server_share = (self.server.cpu_seconds() - self.server_cpu) / wall
        if self.server.redis is not None:
            self.redis_share = (self.server.redis.cpu_seconds() - self.redis_cpu) / wall
        self.load_share = (time.process_time() - self.load_cpu) / wall
        if wall >= 1.0:
            busy = (_core_busy_seconds(SERVER_CORE) - self.core_busy) / wall
            self.others_share = max(0.0, busy - self.server_share - (self.redis_share or 0.0))
        return self

    def describe(self) -> str:
        redis = "" if self.redis_share is None else f" + redis-server {self.redis_share:.0%}"
        others = "" if self.others_share is None else f", others on core 0 {self.others_share:.0%}"
        return f"server CPU {self.server_share:.0%}{redis}, load CPU {self.load_share:.0%}{others}"


def _core_busy_seconds(core: int) -> float:
    """Non-idle time of one core since boot, every process together (/proc/stat)."""
    with open("/proc/stat") as stat:
        for line in stat:
            if line.startswith(f"cpu{core} "):
                ticks = [int(value) for value in line.split()[1:]]
                idle = ticks[3] + ticks[4]  # idle + iowait
                return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")
    raise RuntimeError(f"no cpu{core} line in /proc/stat")


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of already sorted values."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]
