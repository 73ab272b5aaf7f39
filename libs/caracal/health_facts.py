"""Facts about the running system that /metrics and `caracal status` both report, read one way.

The outbox backlog per stream (what the contract's caracal_api_outbox_* gauges sum), what Redis
knows of each stream (dispatch counters, length) and who holds the advisory locks: a dispatcher's
stream lease and a reaper job's lock are session locks, so pg_locks names the holder. No domain
rule is needed here, so the dispatcher's `caracal` command may import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY, BIGINT, TEXT
from sqlalchemy.ext.asyncio import AsyncConnection

from caracal.db.locks import (
    AUDIT_SEAL_LOCK_KEY,
    DCR_GC_LOCK_KEY,
    IDEMPOTENCY_EXPIRY_LOCK_KEY,
    OUTBOX_PRUNE_LOCK_KEY,
    SESSION_REAPER_LOCK_KEY,
    STREAM_LEASE_PREFIX,
)
from caracal.events import stats_key

# The reaper's jobs by the lock each runs under (names as the reaper logs them).
REAPER_JOB_KEYS = {
    "outbox-prune": OUTBOX_PRUNE_LOCK_KEY,
    "audit-seal": AUDIT_SEAL_LOCK_KEY,
    "dcr-gc": DCR_GC_LOCK_KEY,
    "session-expiry": SESSION_REAPER_LOCK_KEY,
    "idempotency-expiry": IDEMPOTENCY_EXPIRY_LOCK_KEY,
}

# A one-bigint advisory lock shows in pg_locks as classid (high 32 bits), objid (low), objsubid 1.
_HOLDERS = text(
    """
    SELECT k.name, a.pid, a.application_name, host(a.client_addr) AS client_addr, a.backend_start
      FROM unnest(:names, :keys) AS k(name, key)
      JOIN pg_locks l ON l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
                     AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                     AND ((l.classid::bigint << 32) | l.objid::bigint) = k.key
      JOIN pg_stat_activity a ON a.pid = l.pid
     ORDER BY k.name
    """
).bindparams(bindparam("names", type_=ARRAY(TEXT)), bindparam("keys", type_=ARRAY(BIGINT)))
_LEASE_KEYS = text("SELECT hashtextextended(:prefix || s, 0) FROM unnest(:streams) AS s").bindparams(
    bindparam("streams", type_=ARRAY(TEXT))
)


async def outbox_health(conn: AsyncConnection) -> dict[str, Any]:
    """The contract's outbox gauges plus pending counts and oldest ages per stream."""
    rows = (
        await conn.execute(
            text(
                """
        SELECT stream_name,
               count(*) FILTER (WHERE dead_at IS NULL) AS pending,
               count(*) FILTER (WHERE dead_at IS NOT NULL) AS dead,
               EXTRACT(EPOCH FROM now() - min(created_at) FILTER (WHERE dead_at IS NULL)) AS oldest_pending,
               EXTRACT(EPOCH FROM now() - min(dead_at) FILTER (WHERE dead_at IS NOT NULL)) AS oldest_dead
          FROM event_outbox WHERE dispatched_at IS NULL GROUP BY stream_name
        """
            )
        )
    ).all()
    return {
        row.stream_name: {
            "pending": row.pending,
            "dead": row.dead,
            "oldest_pending": float(row.oldest_pending or 0),
            "oldest_dead": float(row.oldest_dead or 0),
        }
        for row in rows
    }


@dataclass(frozen=True, slots=True)
class LockHolder:
    """The Postgres session holding a lock: its backend pid, application_name and client."""

    pid: int
    application_name: str
    client_addr: str | None
    since: Any  # the session's backend_start (datetime)


async def lock_holders(conn: AsyncConnection, keys: dict[str, int]) -> dict[str, LockHolder]:
    """Which of the named advisory locks are held right now, and by whom (absent: not held)."""
    rows = (await conn.execute(_HOLDERS, {"names": list(keys), "keys": list(keys.values())})).all()
    return {
        row.name: LockHolder(row.pid, row.application_name or "", row.client_addr, row.backend_start)
        for row in rows
    }


async def lease_holders(conn: AsyncConnection, streams: list[str]) -> dict[str, LockHolder]:
    """The dispatcher session holding each stream's lease (caracal_dispatcher.leases takes them)."""
    if not streams:
        return {}
    found = await conn.execute(_LEASE_KEYS, {"prefix": STREAM_LEASE_PREFIX, "streams": streams})
    keys = dict(zip(streams, found.scalars().all(), strict=True))
    return await lock_holders(conn, keys)


async def dispatch_stats(redis: Redis, streams: list[str]) -> dict[str, dict[str, Any]]:
    """The dispatchers' counters per stream (dispatched, duplicates_skipped, failures, last_lag_ms)."""
    async with redis.pipeline(transaction=False) as pipe:
        for stream in streams:
            pipe.hgetall(stats_key(stream))
        found = await pipe.execute()
    return {
        stream: {k.decode() if isinstance(k, bytes) else k: v for k, v in stats.items()}
        for stream, stats in zip(streams, found, strict=True)
    }


async def stream_lengths(redis: Redis, streams: list[str]) -> dict[str, int]:
    """Entries each Redis stream holds now (0 for a stream not created yet)."""
    async with redis.pipeline(transaction=False) as pipe:
        for stream in streams:
            pipe.xlen(stream)
        found = await pipe.execute()
    return {stream: int(length) for stream, length in zip(streams, found, strict=True)}
