"""The Redis side: one Lua script adds a batch to a stream and moves its high-water mark atomically."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from caracal.events import hwm_key, stats_key, stream_entry

# KEYS: stream, high-water mark, stats.
# ARGV: maxlen, lag_ms, origin, then per entry: txid, seq, n, n field/value pairs.
# An entry at or below the mark was published before (a dispatcher died before marking it): skip it.
# A mark written for another database (origin) says nothing about this one's transaction ids.
PUBLISH_BATCH = """
local htx, hseq = -1, -1
if redis.call('HGET', KEYS[2], 'origin') == ARGV[3] then
  htx = tonumber(redis.call('HGET', KEYS[2], 'tx') or '-1')
  hseq = tonumber(redis.call('HGET', KEYS[2], 'seq') or '-1')
end
local maxlen = tonumber(ARGV[1])
local added, skipped = 0, 0
local i = 4
while i <= #ARGV do
  local tx, seq, n = tonumber(ARGV[i]), tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  if tx > htx or (tx == htx and seq > hseq) then
    local args = {KEYS[1]}
    if maxlen > 0 then
      table.insert(args, 'MAXLEN'); table.insert(args, '~'); table.insert(args, maxlen)
    end
    table.insert(args, '*')
    for j = i + 3, i + 2 + 2 * n do table.insert(args, ARGV[j]) end
    redis.call('XADD', unpack(args))
    htx, hseq = tx, seq
    added = added + 1
  else
    skipped = skipped + 1
  end
  i = i + 3 + 2 * n
end
redis.call('HSET', KEYS[2], 'tx', string.format('%.0f', htx), 'seq', string.format('%.0f', hseq),
           'origin', ARGV[3])
redis.call('HINCRBY', KEYS[3], 'dispatched', added)
redis.call('HINCRBY', KEYS[3], 'duplicates_skipped', skipped)
redis.call('HSET', KEYS[3], 'last_lag_ms', ARGV[2])
return {added, skipped}
"""


@dataclass(frozen=True, slots=True)
class PendingEvent:
    id: str
    txid: int
    seq: int
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Published:
    added: int
    skipped: int


class StreamPublisher:
    def __init__(self, redis: Redis, hmac_key: bytes | None, maxlen: int) -> None:
        self.redis = redis
        self.hmac_key = hmac_key
        self.maxlen = maxlen
        self.script = redis.register_script(PUBLISH_BATCH)
        self.origin = ""  # the database's outbox_origin; set by the dispatcher before it publishes

    async def publish(self, stream: str, events: Sequence[PendingEvent], lag_ms: int) -> Published:
        if not self.origin:
            raise RuntimeError("publisher has no origin: read outbox_origin first")
        args: list[str | int] = [self.maxlen, lag_ms, self.origin]
        for event in events:
            fields = stream_entry(self.hmac_key, stream, event.id, event.payload)
            args += [event.txid, event.seq, len(fields)]
            for name, value in fields.items():
                args += [name, value]
        added, skipped = await self.script(keys=[stream, hwm_key(stream), stats_key(stream)], args=args)
        return Published(int(added), int(skipped))

    async def high_water_mark(self, stream: str) -> tuple[int, int] | None:
        tx, seq, origin = await self.redis.hmget(hwm_key(stream), ["tx", "seq", "origin"])
        if tx is None or seq is None or origin not in (self.origin, self.origin.encode()):
            return None
        return int(tx), int(seq)

    async def count_failure(self, stream: str) -> None:
        await self.redis.hincrby(stats_key(stream), "failures", 1)
