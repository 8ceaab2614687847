"""What the broker still writes when Redis is full, and why nothing else.

With ``maxmemory`` and the ``noeviction`` policy (what the deployment guide
advises), a full Redis refuses every command that may grow its memory (flagged
``denyoom``: ``XADD``, ``SET``, ``HSET``, ``ZADD`` even with ``XX``…), while
reads, ``EXPIRE``, ``DEL`` and ``ZREM`` still work. Were the heartbeat refused,
the leases of replicas that are alive would lapse and other replicas would
claim their answers; were the ``end`` refused, listeners would wait with no end.

So the writes that keep answers honest run as scripts flagged ``allow-oom``
(Redis 7): the heartbeat (it overwrites a key and scores that exist: no
growth), claiming lapsed leases (the same), listener counts, Stop, and the two
events that end an answer (``error`` and ``end``: a few hundred bytes, once per
answer). The deltas of an answer stay refused: an answer whose delta Redis
refuses ends there, cleanly, with what its listeners saw (see :mod:`.writer`).
"""

from __future__ import annotations

from typewriter.streams.redis.keys import APPEND, CLAIM

__all__ = [
    "CANCEL_ANYWAY",
    "CLAIM_ANYWAY",
    "COUNT_ANYWAY",
    "END_ANYWAY",
    "ENDING_EVENTS",
    "HEARTBEAT",
]

_ALLOW_OOM = "#!lua flags=allow-oom\n"

ENDING_EVENTS = frozenset({"error", "end"})
"""The events written even when Redis is full: how an answer ends."""

END_ANYWAY = _ALLOW_OOM + APPEND
""":data:`~.keys.APPEND`, for an answer's ``error`` and ``end``."""

CLAIM_ANYWAY = _ALLOW_OOM + CLAIM
""":data:`~.keys.CLAIM`: a replica that died while Redis was full is still replaced."""

# KEYS: running, replica key. ARGV: lease ms, stream ids...
# XX: a claimed or finished stream stays out.
HEARTBEAT = (
    _ALLOW_OOM
    + """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('SET', KEYS[2], 1, 'PX', ARGV[1])
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[1]), ARGV[i]) end
return #ARGV - 1
"""
)
"""This replica lives, and the leases of the streams it produces are renewed."""

# KEYS: listener counts. ARGV: replica token, change, ttl
COUNT_ANYWAY = (
    _ALLOW_OOM
    + """
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return n
"""
)
"""One more or one fewer listener of a stream on this replica (a listener who reconnects
while Redis is full is still counted, so the grace period does not end its answer)."""

# KEYS: cancel flag. ARGV: ttl, pub/sub channel, stream id
CANCEL_ANYWAY = (
    _ALLOW_OOM
    + """
redis.call('SET', KEYS[1], 1, 'EX', ARGV[1])
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
"""
)
"""Stop: the flag and the message (a user's Stop works while Redis is full)."""
