"""The store and the broker as the rest of the gateway sees them: timed (``observe.timed``).

Only what is not on the token path is timed: a broker's ``append`` runs per
token and its waits last as long as an answer, so they pass straight through.
"""

from __future__ import annotations

from typing import TypeVar

from typewriter.store.sql import SqlStore
from typewriter.streams.base import Broker

from .metrics import Metrics
from .timed import timed

__all__ = ["BROKER_UNTIMED", "timed_broker", "timed_store"]

B = TypeVar("B", bound=Broker)
BROKER_UNTIMED = ("append", "wait_cancelled", "wait_abandoned")


def timed_broker(broker: B, metrics: Metrics) -> B:
    def stop_asked(stream_id: str, owner: str) -> None:
        metrics.stop_requested(stream_id)

    return timed(broker, metrics.broker_operation, BROKER_UNTIMED, {"cancel": stop_asked})


def timed_store(store: SqlStore | None, metrics: Metrics) -> SqlStore | None:
    if store is None:
        return None
    store.report_batches(metrics.store_operation)
    return timed(store, metrics.store_operation)
