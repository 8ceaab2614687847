"""The use case: a question in, a stream of events out, and every way it can end.

:mod:`.service` takes the question (limits, store, stream); :mod:`.generation`
runs the model into the stream and ends it on every path; :mod:`.watchdog`
holds its timeouts, :mod:`.slots` the per-user count of running answers and
:mod:`.orphans` ends the answers of replicas that died.
"""

from __future__ import annotations

from .generation import Answer
from .service import Chat, Question

__all__ = ["Answer", "Chat", "Question"]
