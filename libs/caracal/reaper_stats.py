"""What the reaper's jobs have done, read the same way by /metrics and `caracal status`.

The reaper is a process of its own without an HTTP port: after every run it adds its figures to one
Redis hash (as the dispatchers keep their counters per stream), so every API replica's /metrics
reports them and they outlive a reaper restart. The sealer's backlog is a fact of the database:
the admin audit rows not chained yet.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

REAPER_STATS_KEY = "caracal:reaper:stats"
# per job: runs completed, rows changed, events written, failed runs, time of the last success
COUNTERS = ("runs", "rows", "events", "failures")
LAST_SUCCESS = "last_success"

_UNSEALED = text(
    """
    SELECT count(*) AS rows, EXTRACT(EPOCH FROM now() - min(occurred_at)) AS oldest
      FROM admin_audit_events WHERE chain_seq IS NULL
    """
)


@dataclass(frozen=True, slots=True)
class UnsealedTail:
    """Admin audit rows the sealer has not chained yet, and how long the oldest has waited."""

    rows: int
    oldest_age_s: float


async def unsealed_tail(conn: AsyncConnection) -> UnsealedTail:
    row = (await conn.execute(_UNSEALED)).one()
    return UnsealedTail(int(row.rows), float(row.oldest or 0))


async def record_success(redis: Redis, job: str, rows: int, events: int) -> None:
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hincrby(REAPER_STATS_KEY, f"{job}.runs", 1)
        pipe.hincrby(REAPER_STATS_KEY, f"{job}.rows", rows)
        pipe.hincrby(REAPER_STATS_KEY, f"{job}.events", events)
        pipe.hset(REAPER_STATS_KEY, f"{job}.{LAST_SUCCESS}", f"{time.time():.3f}")
        await pipe.execute()


async def record_failure(redis: Redis, job: str) -> None:
    await redis.hincrby(REAPER_STATS_KEY, f"{job}.failures", 1)


async def job_stats(redis: Redis) -> dict[str, dict[str, float]]:
    """Per job: runs, rows, events, failures and last_success (Unix seconds); absent when never run."""
    stats: dict[str, dict[str, float]] = {}
    for field, value in (await redis.hgetall(REAPER_STATS_KEY)).items():
        name = field.decode() if isinstance(field, bytes) else str(field)
        job, _, figure = name.rpartition(".")
        if job and figure in (*COUNTERS, LAST_SUCCESS):
            stats.setdefault(job, dict.fromkeys(COUNTERS, 0.0))[figure] = float(value)
    return stats
