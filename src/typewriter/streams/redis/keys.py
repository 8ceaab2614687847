"""Where a broker's data lives in Redis: every key name, and the Lua scripts that write them.

Keys (``tw`` is the prefix):

- ``tw:s:{id}`` the answer's Redis stream, entry ids ``0-{seq}`` so that
  ``Last-Event-ID`` maps straight onto ``XREAD``; each entry carries its SSE
  encoding (``w``) so no replica encodes it again.
- ``tw:m:{id}`` a hash: owner, last seq, finished, and the token of the replica
  producing it. ``tw:t:{id}`` a tombstone that outlives both, so an expired
  stream answers 410, not 404.
- ``tw:epoch`` the incarnation of this data: Redis's clock (ms) when it was
  first found missing. Data lost (FLUSHALL, a restart without persistence, a
  failover to an empty replica) means a new epoch; see :mod:`.epoch`.
- ``tw:ch:{owner}`` / ``tw:chn:{owner}`` each user's channel and its counter;
  channel entry ids are ``{epoch}-{n}``, the cursor clients get, so a follower
  reading after an old epoch's id sees the new epoch's first entry at once.
- ``tw:running:all`` a sorted set: running stream → lease deadline (Redis
  clock, ms). The producing replica renews the leases of its streams; when it
  dies they lapse, and another replica claims and ends the stream
  ``interrupted``.
- ``tw:r:{token}`` one key per live replica (same heartbeat), and
  ``tw:l:{id}`` a hash of listener counts per replica, so the grace period
  ignores listeners that were on a replica which died.
- ``tw:c:{id}`` a cancel flag, besides the ``tw:cancel:all`` pub/sub message:
  the message makes Stop prompt, the flag makes it certain (a message sent
  while a replica was reconnecting is gone, the flag is read every poll).

Appends are Lua scripts: the entries, the stream's last number, the channel
entries and (at the end) "finished", atomically, and only while this replica
is still the producer. A writer's batch of deltas, of every stream it holds,
is one :data:`APPEND_MANY`; an answer's ``error`` and ``end`` are one
:data:`APPEND` each. Both are idempotent by sequence number, so a batch whose
reply was lost is retried safely with backoff until Redis is back.
"""

from __future__ import annotations

__all__ = [
    "APPEND",
    "APPEND_MANY",
    "CHANNEL_HEAD",
    "CLAIM",
    "CREATE",
    "EPOCH",
    "RENEW",
    "RESTORE",
    "RUNNING_TTL",
    "Keys",
]

RUNNING_TTL = 24 * 3600  # keys of a running answer expire even if every replica vanished

_NOW_MS = "local t = redis.call('TIME') local now = t[1] * 1000 + math.floor(t[2] / 1000)"

# The data's epoch, made from Redis's clock when missing (inside a script, so every
# replica that finds it missing agrees on the one value).
_EPOCH = """
local function epoch(key)
  local e = redis.call('GET', key)
  if not e then
    local t = redis.call('TIME')
    e = string.format('%d', t[1] * 1000 + math.floor(t[2] / 1000))
    redis.call('SET', key, e)
  end
  return e
end
"""

# KEYS: epoch
EPOCH = _EPOCH + "return epoch(KEYS[1])"

# KEYS: epoch, channel counter, channel. Returns epoch, last cursor, first entry id or false.
CHANNEL_HEAD = (
    _EPOCH
    + """
local e = epoch(KEYS[1])
local first = redis.call('XRANGE', KEYS[3], '-', '+', 'COUNT', 1)
return {e, redis.call('GET', KEYS[2]) or '0', first[1] and first[1][1] or false}
"""
)

# KEYS: stream, meta, running, epoch
# ARGV: owner, token, lease ms, stream id, running ttl, last, then (seq, event, data, wire)...
# A running stream Redis lost, written again with its numbers by its producer (or, from
# what its listeners were shown, by a replica claiming it): only if its meta is missing.
RESTORE = (
    _EPOCH
    + f"""
{_NOW_MS}
local p = redis.call('HGET', KEYS[2], 'producer')
if p then
  if p == ARGV[2] then return 0 end
  return redis.error_reply('TWTAKEN another replica restored it')
end
epoch(KEYS[4])
redis.call('DEL', KEYS[1])
for i = 7, #ARGV, 4 do
  redis.call('XADD', KEYS[1], '0-' .. ARGV[i], 'e', ARGV[i + 1], 'd', ARGV[i + 2], 'w', ARGV[i + 3])
end
if #ARGV >= 7 then redis.call('EXPIRE', KEYS[1], ARGV[5]) end
redis.call('HSET', KEYS[2], 'owner', ARGV[1], 'finished', 0, 'last', ARGV[6], 'producer', ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[5])
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[3]), ARGV[4])
return 1
"""
)

# KEYS: meta, running. ARGV: owner, token, lease ms, stream id, running ttl
CREATE = f"""
{_NOW_MS}
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'finished', 0, 'last', 0, 'producer', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[4])
return now
"""

# KEYS: stream, meta, channel, channel counter, tombstone, running, epoch
# ARGV: token, seq, event, data, wire, finishing, keep, running ttl, tombstone ttl,
#       stream id, channel window
APPEND = (
    _EPOCH
    + """
local m = redis.call('HMGET', KEYS[2], 'producer', 'last', 'finished')
if not m[1] then return redis.error_reply('TWGONE the stream is gone') end
if m[1] ~= ARGV[1] then return redis.error_reply('TWTAKEN another replica ended it') end
local seq = tonumber(ARGV[2])
if seq <= tonumber(m[2]) then return seq end
if m[3] == '1' then return redis.error_reply('TWTAKEN the stream is finished') end
if seq ~= tonumber(m[2]) + 1 then return redis.error_reply('TWGAP an earlier event is missing') end
redis.call('XADD', KEYS[1], '0-' .. seq, 'e', ARGV[3], 'd', ARGV[4], 'w', ARGV[5])
redis.call('HSET', KEYS[2], 'last', seq)
if ARGV[6] == '1' then
  redis.call('HSET', KEYS[2], 'finished', 1)
  redis.call('EXPIRE', KEYS[2], ARGV[7])
  redis.call('EXPIRE', KEYS[1], ARGV[7])
  redis.call('SET', KEYS[5], 1, 'EX', ARGV[9])
  redis.call('ZREM', KEYS[6], ARGV[10])
elseif seq == 1 then
  redis.call('EXPIRE', KEYS[1], ARGV[8])
end
local n = redis.call('INCR', KEYS[4])
redis.call('XADD', KEYS[3], 'MAXLEN', ARGV[11], epoch(KEYS[7]) .. '-' .. n,
           'i', ARGV[10], 'q', seq, 'e', ARGV[3], 'd', ARGV[4])
return seq
"""
)

# KEYS: epoch, then per stream: stream, meta, channel, channel counter
# ARGV: token, running ttl, channel window, then per stream: stream id, first seq, count,
#       then (event, data, wire) per event
# Returns per stream the last seq Redis holds once written, or an error as a string
# ('TWGONE ...', 'TWTAKEN ...', 'TWGAP ...'): the other streams of the batch go on.
# Deltas only (never "finished"): APPEND writes the ending. One script per batch, not
# one per event: the calls, their replies and the client's packing were most of the
# cost of an event (see docs/benchmarks.md). The first write is an XADD, so a Redis
# over maxmemory refuses the whole batch before any of it is written. Each channel's
# counter is read once and written once per batch, and the channel is trimmed to its
# window once per batch, only when it is longer (an exact trim per entry cost more
# than the entry's XADD).
APPEND_MANY = (
    _EPOCH
    + """
local token, ttl, window = ARGV[1], ARGV[2], tonumber(ARGV[3])
local out = {}
local e = false
local channels, counts, counters = {}, {}, {}
local a, k = 4, 2
while a <= #ARGV do
  local id, first, count = ARGV[a], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local s, m, ch = KEYS[k], KEYS[k + 1], KEYS[k + 2]
  local at = a + 3
  a = at + 3 * count
  k = k + 4
  local meta = redis.call('HMGET', m, 'producer', 'last', 'finished')
  local last = tonumber(meta[2])
  local upto = first + count - 1
  if not meta[1] then
    out[#out + 1] = 'TWGONE the stream is gone'
  elseif meta[1] ~= token then
    out[#out + 1] = 'TWTAKEN another replica ended it'
  elseif upto <= last then
    out[#out + 1] = last
  elseif meta[3] == '1' then
    out[#out + 1] = 'TWTAKEN the stream is finished'
  elseif first > last + 1 then
    out[#out + 1] = 'TWGAP an earlier event is missing'
  else
    local from = last + 1
    at = at + 3 * (from - first)
    local start = at
    for seq = from, upto do
      redis.call('XADD', s, '0-' .. seq, 'e', ARGV[at], 'd', ARGV[at + 1], 'w', ARGV[at + 2])
      at = at + 3
    end
    redis.call('HSET', m, 'last', upto)
    if from == 1 then redis.call('EXPIRE', s, ttl) end
    if not e then e = epoch(KEYS[1]) end
    local n = counts[ch]
    if not n then
      channels[#channels + 1] = ch
      counters[ch] = KEYS[k - 1]
      n = tonumber(redis.call('GET', KEYS[k - 1]) or '0')
    end
    at = start
    for seq = from, upto do
      n = n + 1
      redis.call('XADD', ch, e .. '-' .. n, 'i', id, 'q', seq, 'e', ARGV[at], 'd', ARGV[at + 1])
      at = at + 3
    end
    counts[ch] = n
    out[#out + 1] = upto
  end
end
for _, ch in ipairs(channels) do
  redis.call('SET', counters[ch], counts[ch])
  if redis.call('XLEN', ch) > window then redis.call('XTRIM', ch, 'MAXLEN', window) end
end
return out
"""
)

# KEYS: running. ARGV: lease ms, stream ids...  (XX: a claimed or finished stream stays out)
RENEW = f"""
{_NOW_MS}
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[1]), ARGV[i]) end
return #ARGV - 1
"""

# KEYS: running. ARGV: token, lease ms, how many, key prefix.
# Claiming a stream is taking over its lease: should this replica die while ending
# it, the lease lapses again and yet another replica claims it. The meta key is
# spelled here as Keys.meta spells it.
CLAIM = f"""
{_NOW_MS}
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(ids) do
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), id)
  local meta = ARGV[4] .. ':m:' .. id
  if redis.call('EXISTS', meta) == 1 then redis.call('HSET', meta, 'producer', ARGV[1]) end
end
return ids
"""


class Keys:
    """The names of one broker's keys, under its ``prefix``."""

    __slots__ = ("prefix", "running", "cancels", "epoch")

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.running = f"{prefix}:running:all"
        self.epoch = f"{prefix}:epoch"
        self.cancels = f"{prefix}:cancel:all"  # the pub/sub channel of Stop

    def stream(self, stream_id: str) -> str:
        return f"{self.prefix}:s:{stream_id}"

    def meta(self, stream_id: str) -> str:
        return f"{self.prefix}:m:{stream_id}"

    def tombstone(self, stream_id: str) -> str:
        return f"{self.prefix}:t:{stream_id}"

    def listeners(self, stream_id: str) -> str:
        return f"{self.prefix}:l:{stream_id}"

    def cancel_flag(self, stream_id: str) -> str:
        return f"{self.prefix}:c:{stream_id}"

    def channel(self, owner: str) -> str:
        return f"{self.prefix}:ch:{owner}"

    def channel_counter(self, owner: str) -> str:
        return f"{self.prefix}:chn:{owner}"

    def replica(self, token: str) -> str:
        return f"{self.prefix}:r:{token}"

    def append(self, stream_id: str, owner: str) -> list[str]:
        """KEYS of :data:`APPEND`, in its order."""
        return [
            self.stream(stream_id),
            self.meta(stream_id),
            self.channel(owner),
            self.channel_counter(owner),
            self.tombstone(stream_id),
            self.running,
            self.epoch,
        ]

    def append_many(self, stream_id: str, owner: str) -> list[str]:
        """The per-stream KEYS of :data:`APPEND_MANY`, in its order."""
        return [
            self.stream(stream_id),
            self.meta(stream_id),
            self.channel(owner),
            self.channel_counter(owner),
        ]

    def restore(self, stream_id: str) -> list[str]:
        """KEYS of :data:`RESTORE`, in its order."""
        return [self.stream(stream_id), self.meta(stream_id), self.running, self.epoch]
