"""Scenario 3: resident memory per idle SSE connection, at 5,000 and 10,000 connections.

A chat page keeps one EventSource open per tab for hours, mostly idle; what a
server pays for that is memory. Each server gets the same number of
connections to its idle endpoint (typewriter: ``GET /v1/events``, the user's
channel; the baseline: an endpoint that sends ``connected`` and then only
pings), all held open until every one has received its first body bytes, which
means the server has set the response up completely. The figure is the growth
of the server's VmRSS over that, divided by the number of connections.

The 10,000 row runs where the open-file limit allows it (this process holds one
descriptor per connection, and a typewriter server admits three quarters of its limit:
``http_limits.connection_cap``), and not for the Redis kind, whose broker pool
(``servers.REDIS_POOL``) holds one Redis connection per listener and stops at 10,000.

Connections are opened at most ``_IN_FLIGHT`` at a time so the listen backlog
never overflows (a dropped SYN would add a one-second retransmit, not memory).

With the Redis broker each channel listener also holds a connection to Redis
(its own blocking ``XREAD``), which costs memory in redis-server too; the
second row adds redis-server's RSS growth to the server's (for the other kinds
the two rows are the same).
"""

from __future__ import annotations

import asyncio
import resource
import time

from loadgen import Connection, open_request
from measure import Outcome, Row
from servers import REDIS, Server, running

__all__ = ["run"]

_IN_FLIGHT = 256
_LARGE = 10_000
_SSE_HEADERS = {"accept": "text/event-stream"}


async def _open_idle(port: int, gate: asyncio.Semaphore) -> Connection:
    async with gate:
        connection = await open_request(
            port, "GET", "/v1/events", mode="idle", headers=_SSE_HEADERS
        )
        try:
            await asyncio.wait_for(asyncio.shield(connection.first_body), 60)
        except BaseException:
            connection.close()
            raise
        return connection


async def _measure(server: Server, count: int) -> tuple[float, float, float, list[str]]:
    """(KiB per connection, of which redis-server's, seconds to open them all, problems)."""
    warm = await open_request(server.port, "GET", "/v1/events", mode="idle", headers=_SSE_HEADERS)
    await warm.first_body  # first use: imports and caches belong to "before"
    warm.close()
    before = server.rss_kib()
    redis_before = server.redis.rss_kib() if server.redis is not None else 0
    gate = asyncio.Semaphore(_IN_FLIGHT)
    started = time.perf_counter()
    opened = await asyncio.gather(
        *(_open_idle(server.port, gate) for _ in range(count)), return_exceptions=True
    )
    seconds = time.perf_counter() - started
    after = server.rss_kib()
    redis_after = server.redis.rss_kib() if server.redis is not None else 0
    connections = [c for c in opened if isinstance(c, Connection)]
    problems = [f"{type(e).__name__}: {e}" for e in opened if isinstance(e, BaseException)]
    problems += [f"HTTP {c.status}" for c in connections if c.status != 200]
    problems += ["closed while idle" for c in connections if c.done.done()]
    for connection in connections:
        connection.close()
    return (after - before) / count, (redis_after - redis_before) / count, seconds, problems


def _counts(quick: bool) -> list[int]:
    if quick:
        return [1000]
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return [5000, _LARGE] if soft * 3 // 4 >= _LARGE + 100 else [5000]


async def run(servers: dict[str, Server], quick: bool) -> Outcome:
    outcome = Outcome()
    for count in _counts(quick):
        if count < _LARGE:
            part = await _run(servers, count)
        else:  # fresh servers: memory freed by the first row's connections would be reused
            kinds = tuple(kind for kind in servers if kind != REDIS)
            soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            async with running(kinds, soft) as fresh:
                part = await _run(fresh, count)
                for server in fresh.values():
                    part.problems += [f"{server.kind} log: {x}" for x in server.log_problems()[:5]]
        outcome.rows += part.rows
        outcome.notes += part.notes
        outcome.problems += part.problems
    return outcome


async def _run(servers: dict[str, Server], count: int) -> Outcome:
    outcome = Outcome()
    values: dict[str, float | None] = {}
    totals: dict[str, float | None] = {}
    for kind, server in servers.items():
        per_connection, in_redis, seconds, problems = await _measure(server, count)
        values[kind] = per_connection
        totals[kind] = per_connection + in_redis
        outcome.problems += [f"{kind}, idle: {p}" for p in problems[:5]]
        redis = "" if server.redis is None else f"; redis-server +{in_redis:.1f} KiB/connection"
        outcome.notes.append(
            f"idle, {kind}: {count:,} connections open in {seconds:.2f} s "
            f"({count / seconds:,.0f}/s, at most {_IN_FLIGHT} in flight), "
            f"{len(problems)} problems{redis}"
        )
    tables = [("RSS per connection, KiB", values)]
    if any(server.redis is not None for server in servers.values()):
        tables.append(("RSS per connection with redis-server's, KiB", totals))
    for metric, table in tables:
        outcome.rows.append(
            Row(
                f"{count:,} idle connections",
                metric,
                table,
                digits=1,
                verified=not outcome.problems,
                higher_is_better=False,
            )
        )
    return outcome
