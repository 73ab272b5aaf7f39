"""The Redis side: one Lua script adds a batch to a stream and moves its high-water mark atomically."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import msgspec
from opentelemetry.trace import Link, SpanKind, Tracer
from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode
from redis.exceptions import NoScriptError, RedisError

from caracal.events import hwm_key, stats_key, stream_entry
from caracal.redis_client import as_cluster
from caracal.telemetry import link_to

# KEYS: stream, high-water mark, stats.
# ARGV: maxlen, lag_ms, origin, and the batch as one MessagePack array of [txid, seq, [field, value, ...]]
# (one argument instead of a dozen per entry: encoding arguments was the dispatcher's main cost; and
# MessagePack, because cmsgpack unpacks it in about 3/4 of the time cjson takes for the same JSON).
# Redis runs nothing else while the script runs: about 5-10 us an entry here (a bare XADD is 1.5 us;
# unpacking and redis.call are the rest), which is why CARACAL_OUTBOX_BATCH_MAX stays in the hundreds.
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
for _, entry in ipairs(cmsgpack.unpack(ARGV[4])) do
  local tx, seq = tonumber(entry[1]), tonumber(entry[2])
  if tx > htx or (tx == htx and seq > hseq) then
    if maxlen > 0 then
      redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', unpack(entry[3]))
    else
      redis.call('XADD', KEYS[1], '*', unpack(entry[3]))
    end
    htx, hseq = tx, seq
    added = added + 1
  else
    skipped = skipped + 1
  end
end
redis.call('HSET', KEYS[2], 'tx', string.format('%.0f', htx), 'seq', string.format('%.0f', hseq),
           'origin', ARGV[3])
redis.call('HINCRBY', KEYS[3], 'dispatched', added)
redis.call('HINCRBY', KEYS[3], 'duplicates_skipped', skipped)
redis.call('HSET', KEYS[3], 'last_lag_ms', ARGV[2])
return {added, skipped}
"""


_encode = msgspec.msgpack.Encoder().encode


def _flat(fields: dict[str, str]) -> list[str]:
    return [part for item in fields.items() for part in item]


class PendingEvent(NamedTuple):
    """One outbox row on its way out (a tuple: built once per event, it costs a third of a dataclass)."""

    id: str
    txid: int
    seq: int
    payload: dict[str, Any]
    traceparent: str | None = None  # the writing request's trace context, if it was traced


class SignedBatch(NamedTuple):
    """A batch as the publish script takes it: every entry signed, all of them in one argument."""

    events: Sequence[PendingEvent]
    entries: bytes


def _entry(key: bytes | None, stream: str, event: PendingEvent) -> list[str]:
    """The signed entry; a traced row adds its `traceparent` field (under `_sig` like every field)."""
    payload = (
        event.payload if event.traceparent is None else {**event.payload, "traceparent": event.traceparent}
    )
    return _flat(stream_entry(key, stream, event.id, payload))


def _links(events: Sequence[PendingEvent]) -> list[Link]:
    """One link per traced row: a batch carries many requests' events, so it is the child of none."""
    return [link for event in events if (link := link_to(event.traceparent)) is not None]


class NotReplicated(RedisError):
    """WAIT saw fewer replicas than asked for: the batch may vanish in a failover, so it is not delivered."""


@dataclass(frozen=True, slots=True)
class Replication:
    """How many replicas must hold a batch (and its mark) before its rows count as delivered (0: none)."""

    replicas: int = 0
    timeout_ms: int = 1000


class StreamPublisher:
    def __init__(
        self,
        redis: Redis,
        hmac_key: bytes | None,
        maxlen: int,
        tracer: Tracer | None = None,
        replication: Replication | None = None,
    ) -> None:
        self.redis = redis
        self.tracer = tracer  # None while tracing is off: a batch then opens no span at all
        self.hmac_key = hmac_key
        self.maxlen = maxlen
        self.replication = replication or Replication()
        self.script = redis.register_script(PUBLISH_BATCH)
        self.origin = ""  # the database's outbox_origin; set by the dispatcher before it publishes

    def sign(self, stream: str, events: Sequence[PendingEvent]) -> SignedBatch:
        """The CPU side of publishing (most of the dispatcher's time per event), apart from the round
        trip: the dispatcher signs batch k+1 while batch k is in Redis."""
        key = self.hmac_key
        entries = [(str(event.txid), str(event.seq), _entry(key, stream, event)) for event in events]
        return SignedBatch(events, _encode(entries))

    async def publish(self, stream: str, batch: SignedBatch, lag_ms: int) -> None:
        """Add the batch; entries at or below the stream's high-water mark are skipped (counted in stats)."""
        if not self.origin:
            raise RuntimeError("publisher has no origin: read outbox_origin first")
        args: list[str | int | bytes] = [self.maxlen, lag_ms, self.origin, batch.entries]
        keys = [stream, hwm_key(stream), stats_key(stream)]
        if self.tracer is None:
            await self._run(stream, keys, args)
            return
        with self.tracer.start_as_current_span(
            f"publish {stream}",
            kind=SpanKind.PRODUCER,
            links=_links(batch.events),
            attributes={
                "messaging.system": "redis",
                "messaging.destination.name": stream,
                "messaging.batch.message_count": len(batch.events),
            },
        ):
            await self._run(stream, keys, args)

    async def _run(self, stream: str, keys: list[str], args: list[str | int | bytes]) -> None:
        if not self.replication.replicas:
            await self.script(keys=keys, args=args)
            return
        publish = ["EVALSHA", self.script.sha, len(keys), *keys, *args]
        try:
            await self._replicated(stream, publish)
        except NoScriptError:  # a promoted replica, or a restarted node, has an empty script cache
            await self.redis.script_load(PUBLISH_BATCH)
            await self._replicated(stream, publish)

    async def _replicated(self, stream: str, *commands: list[Any]) -> list[Any]:
        """`commands` (keyed by `stream`), then WAIT on the same connection; NotReplicated when short.

        WAIT counts the replicas that acknowledged this connection's writes so far, so it must follow
        them on their connection: one pipeline to the stream's node. On a cluster, the node that
        answered WAIT must still own the stream's slot afterwards (a redirected write went elsewhere).
        """
        replicas, timeout_ms = self.replication.replicas, self.replication.timeout_ms
        node = await self._stream_node(stream)
        async with self.redis.pipeline(transaction=False) as pipe:
            for command in commands:
                pipe.execute_command(*command)
            pipe.execute_command("WAIT", replicas, timeout_ms, **({"target_nodes": node} if node else {}))
            *replies, acknowledged = await pipe.execute()
        if node is not None and node.name != (await self._stream_node(stream) or node).name:
            raise NotReplicated(f"{stream}: its slot moved to another node while publishing")
        if int(acknowledged) < replicas:
            raise NotReplicated(
                f"{stream}: {acknowledged} of {replicas} replicas acknowledged in {timeout_ms} ms"
            )
        return list(replies)

    async def _stream_node(self, stream: str) -> ClusterNode | None:
        """On a cluster, the master of the stream's slot (the map is refreshed first after a failure)."""
        cluster = as_cluster(self.redis)
        if cluster is None:
            return None
        await cluster.initialize()
        return cluster.get_node_from_key(stream)

    async def high_water_mark(self, stream: str) -> tuple[int, int] | None:
        """The stream's mark. With replication asked for, only a mark that reached the replicas counts:
        a counter write in its slot after reading it, then WAIT (the connection's offset covers the mark)."""
        fields = ["tx", "seq", "origin"]
        if self.replication.replicas:
            read = ["HMGET", hwm_key(stream), *fields]
            (tx, seq, origin), _ = await self._replicated(
                stream, read, ["HINCRBY", stats_key(stream), "reconciled", 1]
            )
        else:
            tx, seq, origin = await self.redis.hmget(hwm_key(stream), fields)
        if tx is None or seq is None or origin not in (self.origin, self.origin.encode()):
            return None
        return int(tx), int(seq)

    async def count_failure(self, stream: str) -> None:
        await self.redis.hincrby(stats_key(stream), "failures", 1)
