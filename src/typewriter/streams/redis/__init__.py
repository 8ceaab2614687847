"""Streams in Redis, so that any replica can replay, follow, stop and finish any answer.

The broker is a few parts, each owning its own state, composed by
:class:`~typewriter.streams.redis.broker.RedisBroker`:

- :mod:`.keys` every key name and the Lua scripts (the data's whole layout);
- :mod:`.connection` the two connection pools, and what a lost Redis raises;
- :mod:`.background` the broker's tasks and the flag that stops them;
- :mod:`.writer` the streams this replica produces and their batched appends;
- :mod:`.followers` / :mod:`.channels` local mirrors of streams and of users'
  channels, each filled by one blocking reader (:mod:`.reads`);
- :mod:`.leases` the heartbeat, and claiming the streams of dead replicas;
- :mod:`.cancels` Stop across replicas; :mod:`.presence` listener counts and
  the grace period;
- :mod:`.epoch` noticing that Redis lost its data; :mod:`.restore` writing a
  lost running stream back with its numbers.
- :mod:`.full` the scripts Redis runs even when it is full (``maxmemory``).

Imports go one way, from the broker down to the keys; no part imports the broker.
"""

from __future__ import annotations

from typewriter.streams.redis.broker import RedisBroker

__all__ = ["RedisBroker"]
