"""The gateway's Prometheus metrics, in a registry of its own.

Each :class:`Metrics` owns a ``CollectorRegistry``: several apps in one process
(tests, benchmarks) never mix their numbers, and nothing lands in
``prometheus_client``'s global registry.

The token path pays almost nothing: what moves per write of a listener (events
and bytes sent) is two additions on a plain :class:`Tally`, read by a collector
at scrape time, because a ``prometheus_client`` counter takes a lock per
increment. Everything else moves once per answer, request or operation.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["Metrics", "Tally"]

# Seconds. First tokens range from a cached model's milliseconds to a cold one's minute.
FIRST_TOKEN_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
# What the gateway adds, and how fast a Stop closes the upstream: milliseconds matter.
FAST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_STOP_REQUESTS_KEPT = 10_000
_BREAKER_VALUES = {"closed": 0, "half_open": 1, "open": 2}
"""``typewriter_upstream_breaker_state``: higher is worse, so a max over time alerts."""

# A ``_created`` sample per series doubles the text for what Prometheus reads from the
# process start time anyway (the switch is the library's own, for the whole process).
disable_created_metrics()  # type: ignore[no-untyped-call]


class Tally:
    """Counts bumped on the token path: plain integers, one event loop, no lock."""

    __slots__ = ("events", "bytes", "resumes")

    def __init__(self) -> None:
        self.events = 0
        self.bytes = 0
        self.resumes = 0


class _TallyCollector(Collector):
    def __init__(self, tally: Tally) -> None:
        self.tally = tally

    def collect(self) -> Iterator[CounterMetricFamily]:
        tally = self.tally
        yield CounterMetricFamily(
            "typewriter_events_sent", "stream events written to listeners", value=tally.events
        )
        yield CounterMetricFamily(
            "typewriter_sent_bytes",
            "bytes written on event-stream responses (events, pings, retry lines)",
            value=tally.bytes,
        )
        yield CounterMetricFamily(
            "typewriter_resumes",
            "event-stream responses that resumed from a Last-Event-ID",
            value=tally.resumes,
        )


class RetainedBytes(Protocol):
    """The in-process broker's budget, as the metrics read it (``streams.budget``)."""

    @property
    def total(self) -> int: ...

    @property
    def dropped(self) -> int: ...


class _RetainedCollector(Collector):
    """Read at scrape time: the budget moves on every append, the token path."""

    def __init__(self, budget: RetainedBytes) -> None:
        self.budget = budget

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        yield GaugeMetricFamily(
            "typewriter_retained_bytes",
            "bytes the in-process broker counts for its streams and channels",
            value=self.budget.total,
        )
        yield CounterMetricFamily(
            "typewriter_retained_dropped",
            "finished streams dropped before their retention ended, for the memory budget",
            value=self.budget.dropped,
        )


class Metrics:
    """Every family, and one method per thing that happens.

    The upstream methods (``upstream_*``) are for the OpenAI-compatible backend
    and its health checks; the label ``upstream`` is the configured name.
    """

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.sent = Tally()
        registry.register(_TallyCollector(self.sent))
        self._stop_requests: dict[str, float] = {}
        self.answers_started = Counter(
            "typewriter_answers_started",
            "answers started",
            ["assistant"],
            registry=registry,
        )
        self.answers_ended = Counter(
            "typewriter_answers_ended",
            "answers ended, by how they ended",
            ["assistant", "finish_reason"],
            registry=registry,
        )
        self.answers_running = Gauge(
            "typewriter_answers_running", "answers generating now", registry=registry
        )
        self.listeners_open = Gauge(
            "typewriter_listeners_open", "event-stream responses open now", registry=registry
        )
        self.first_token = Histogram(
            "typewriter_first_token_seconds",
            "time from an ask received to its first piece of text appended",
            buckets=FIRST_TOKEN_BUCKETS,
            registry=registry,
        )
        self.gateway_first_token = Histogram(
            "typewriter_gateway_first_token_seconds",
            "the gateway's part of the time to first token: the total minus the upstream's own "
            "(from its request sent to its first piece)",
            buckets=FAST_BUCKETS,
            registry=registry,
        )
        self.stop_to_closed = Histogram(
            "typewriter_stop_to_upstream_closed_seconds",
            "time from a Stop (cancel request or closed direct response) to the model's "
            "stream being closed",
            buckets=FAST_BUCKETS,
            registry=registry,
        )
        self.upstream_requests = Counter(
            "typewriter_upstream_requests",
            "requests sent to an upstream",
            ["upstream"],
            registry=registry,
        )
        self.upstream_errors = Counter(
            "typewriter_upstream_errors",
            "failed upstream requests, by kind of failure",
            ["upstream", "kind"],
            registry=registry,
        )
        self.upstream_retries = Counter(
            "typewriter_upstream_retries",
            "requests tried again on the same upstream",
            ["upstream"],
            registry=registry,
        )
        self.upstream_failovers = Counter(
            "typewriter_upstream_failovers",
            "requests moved from one upstream to another",
            ["from_upstream", "to_upstream"],
            registry=registry,
        )
        self.upstream_health = Gauge(
            "typewriter_upstream_up",
            "1 when the upstream's last check answered, 0 when it did not",
            ["upstream"],
            registry=registry,
        )
        self.upstream_breakers = Gauge(
            "typewriter_upstream_breaker_state",
            "the upstream's circuit breaker: 0 closed, 1 half-open, 2 open",
            ["upstream"],
            registry=registry,
        )
        self.store_seconds = Histogram(
            "typewriter_store_operation_seconds",
            "time of one store operation (one transaction)",
            ["operation"],
            buckets=FAST_BUCKETS,
            registry=registry,
        )
        self.store_errors = Counter(
            "typewriter_store_errors",
            "store operations that failed",
            ["operation"],
            registry=registry,
        )
        self.broker_seconds = Histogram(
            "typewriter_broker_operation_seconds",
            "time of one broker operation (appends are not timed: they are the token path)",
            ["operation"],
            buckets=FAST_BUCKETS,
            registry=registry,
        )
        self.broker_errors = Counter(
            "typewriter_broker_errors",
            "broker operations that failed",
            ["operation"],
            registry=registry,
        )
        self.refusals = Counter(
            "typewriter_refusals",
            "requests answered with an error, by status and code",
            ["status", "code"],
            registry=registry,
        )

    def watch_retained(self, budget: RetainedBytes) -> None:
        """Report the in-process broker's retained bytes (no other broker has a budget)."""
        self.registry.register(_RetainedCollector(budget))

    def render(self) -> bytes:
        """The exposition text of every family."""
        return generate_latest(self.registry)

    # Answers

    def answer_started(self, assistant: str) -> None:
        self.answers_started.labels(assistant).inc()
        self.answers_running.inc()

    def answer_ended(self, assistant: str, finish_reason: str) -> None:
        self.answers_ended.labels(assistant, finish_reason).inc()
        self.answers_running.dec()

    def first_token_appended(self, total: float, upstream: float) -> None:
        """``total``: ask → first text appended; ``upstream``: the model's own share."""
        self.first_token.observe(total)
        self.gateway_first_token.observe(max(total - upstream, 0.0))

    def stop_requested(self, stream_id: str) -> None:
        """A Stop was asked here: the generation, if it runs here, measures from now."""
        requests = self._stop_requests
        if len(requests) >= _STOP_REQUESTS_KEPT:  # Stops of streams running elsewhere
            requests.clear()
        requests.setdefault(stream_id, time.monotonic())

    def stopped(self, stream_id: str, heard_at: float) -> None:
        """The model of a stopped answer is closed; ``heard_at`` (``time.monotonic``) is when
        the generation heard the Stop, used when it was asked on another replica."""
        asked_at = self._stop_requests.pop(stream_id, heard_at)
        self.stop_to_closed.observe(time.monotonic() - asked_at)

    def forget_stop(self, stream_id: str) -> None:
        self._stop_requests.pop(stream_id, None)

    # Listeners

    def listener_opened(self) -> None:
        self.listeners_open.inc()

    def listener_closed(self) -> None:
        self.listeners_open.dec()

    # Upstreams (called by the OpenAI-compatible backend)

    def upstream_request(self, upstream: str) -> None:
        self.upstream_requests.labels(upstream).inc()

    def upstream_error(self, upstream: str, kind: str) -> None:
        self.upstream_errors.labels(upstream, kind).inc()

    def upstream_retry(self, upstream: str) -> None:
        self.upstream_retries.labels(upstream).inc()

    def upstream_failover(self, from_: str, to: str) -> None:
        self.upstream_failovers.labels(from_, to).inc()

    def upstream_up(self, upstream: str, up: bool) -> None:
        self.upstream_health.labels(upstream).set(1 if up else 0)

    def upstream_breaker(self, upstream: str, state: str) -> None:
        """``state`` is ``models.health.BreakerState``, taken as its plain name so that
        observing does not depend on the model backends."""
        self.upstream_breakers.labels(upstream).set(_BREAKER_VALUES[state])

    # Store and broker (see ``observe.timed``)

    def store_operation(self, operation: str, seconds: float, failed: bool) -> None:
        self.store_seconds.labels(operation).observe(seconds)
        if failed:
            self.store_errors.labels(operation).inc()

    def broker_operation(self, operation: str, seconds: float, failed: bool) -> None:
        self.broker_seconds.labels(operation).observe(seconds)
        if failed:
            self.broker_errors.labels(operation).inc()

    def broker_failed(self, operation: str) -> None:
        """An untimed operation failed (an append: it surfaces as the answer's error)."""
        self.broker_errors.labels(operation).inc()

    # Requests

    def refused(self, status: int, code: str) -> None:
        self.refusals.labels(str(status), code).inc()
