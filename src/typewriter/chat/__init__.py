"""The use case: a question in, a stream of events out, and every way it can end.

:mod:`.service` takes the question (limits, store, stream); :mod:`.generation`
runs the model into the stream and ends it on every path; :mod:`.watchdog`
holds its timeouts and :mod:`.orphans` ends the answers of replicas that died.
The per-user count of running answers is :mod:`typewriter.slots`, beside the
chat rather than in it, so that the Redis broker's shared count can implement
it without the broker importing the use case.
"""

from __future__ import annotations

from .generation import Answer
from .service import Chat, Question

__all__ = ["Answer", "Chat", "Question"]
