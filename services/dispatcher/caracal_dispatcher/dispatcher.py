"""One dispatch iteration: claim streams, publish each stream's next batch, record the outcome."""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from caracal.settings import Settings
from caracal_dispatcher.leases import StreamLeases
from caracal_dispatcher.publisher import PendingEvent, StreamPublisher

log = logging.getLogger("caracal.dispatcher")

MAX_BACKOFF_S = 60.0

# Streams with pending events, by a loose index scan (one index probe per stream, not per row).
PENDING_STREAMS = text(
    """
    WITH RECURSIVE s(name) AS (
        (SELECT stream_name FROM event_outbox
          WHERE dispatched_at IS NULL AND dead_at IS NULL ORDER BY stream_name LIMIT 1)
        UNION ALL
        SELECT (SELECT stream_name FROM event_outbox
                 WHERE dispatched_at IS NULL AND dead_at IS NULL AND stream_name > s.name
                 ORDER BY stream_name LIMIT 1)
          FROM s WHERE s.name IS NOT NULL)
    SELECT name FROM s WHERE name IS NOT NULL
    """
)

# Only rows whose transaction is older than every transaction still running: no earlier
# transaction can commit into this stream's past after we publish.
NEXT_BATCH = text(
    """
    SELECT id, payload_json, txid::text::bigint AS txid, seq, attempts,
           EXTRACT(EPOCH FROM available_at - now()) AS wait_s,
           EXTRACT(EPOCH FROM now() - created_at) * 1000 AS age_ms
      FROM event_outbox
     WHERE stream_name = :stream AND dispatched_at IS NULL AND dead_at IS NULL
       AND txid < pg_snapshot_xmin(pg_current_snapshot())
     ORDER BY txid, seq
     LIMIT :batch
    """
)

MARK_DISPATCHED = text(
    """
    UPDATE event_outbox
       SET dispatched_at = now(), attempts = attempts + 1, locked_until = NULL, locked_by = :worker,
           last_error = NULL
     WHERE id = ANY(:ids)
    """
)

MARK_FAILED = text(
    """
    UPDATE event_outbox
       SET attempts = attempts + 1, last_error = :error, locked_by = :worker,
           available_at = CASE WHEN attempts + 1 >= :max_attempts THEN 'infinity'::timestamptz
                               ELSE now() + make_interval(secs => :delay) END,
           dead_at = CASE WHEN attempts + 1 >= :max_attempts THEN now() END
     WHERE id = ANY(:ids)
    """
)

RECONCILE = text(
    """
    UPDATE event_outbox SET dispatched_at = now(), locked_by = :worker
     WHERE stream_name = :stream AND dispatched_at IS NULL AND dead_at IS NULL
       AND (txid < (:tx)::text::xid8 OR (txid = (:tx)::text::xid8 AND seq <= :seq))
    """
)


def retry_delay(attempts: int) -> float:
    """2^attempts seconds, capped at 60 s, jittered down by up to 30 % so retries spread out."""
    base = min(MAX_BACKOFF_S, 2.0 ** min(attempts, 16))
    return base * (1 - 0.3 * random.random())


@dataclass(frozen=True, slots=True)
class StreamOutcome:
    full: bool = False
    retry_in: float | None = None


class Dispatcher:
    def __init__(
        self, settings: Settings, engine: AsyncEngine, publisher: StreamPublisher, leases: StreamLeases
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.publisher = publisher
        self.leases = leases

    async def iteration(self) -> float:
        """Publish one batch per held stream; returns how long to wait before the next iteration."""
        async with self.engine.connect() as conn:
            streams = list((await conn.execute(PENDING_STREAMS)).scalars())
        for stream in await self.leases.claim(streams):
            await self.reconcile(stream)
        delay = self.settings.outbox_poll_ms / 1000
        for stream in streams:
            if stream not in self.leases.held:
                continue
            outcome = await self.dispatch_stream(stream)
            if outcome.full:
                delay = 0.0
            elif outcome.retry_in is not None:
                delay = min(delay, max(outcome.retry_in, 0.0))
        return delay

    async def reconcile(self, stream: str) -> None:
        """After taking a stream: rows at or below its Redis high-water mark were published already."""
        try:
            mark = await self.publisher.high_water_mark(stream)
        except (RedisError, OSError) as exc:
            # Reconciling only saves re-sending: the publish script skips what is at or below the mark
            # anyway. Raising here would stop every stream's dispatch, and count no try, while Redis is down.
            log.warning("%s: not reconciled (%r); the publish script still keeps repeats out", stream, exc)
            return
        if mark is None:
            return
        async with self.engine.begin() as conn:
            result = await conn.execute(
                RECONCILE,
                {"stream": stream, "tx": str(mark[0]), "seq": mark[1], "worker": self.settings.worker_id},
            )
        if result.rowcount:
            log.info(
                "%s: %d events were published before a restart; marked delivered", stream, result.rowcount
            )

    async def dispatch_stream(self, stream: str) -> StreamOutcome:
        batch = self.settings.outbox_batch
        async with self.engine.connect() as conn:
            rows = (await conn.execute(NEXT_BATCH, {"stream": stream, "batch": batch})).all()
        if not rows:
            return StreamOutcome()
        if rows[0].wait_s > 0:
            return StreamOutcome(retry_in=float(rows[0].wait_s))
        events = [PendingEvent(r.id, int(r.txid), int(r.seq), r.payload_json) for r in rows]
        ids = [event.id for event in events]
        try:
            await self.publisher.publish(stream, events, int(rows[0].age_ms))
        except (RedisError, OSError) as exc:
            return await self._failed(stream, rows, ids, exc)
        async with self.engine.begin() as conn:
            await conn.execute(MARK_DISPATCHED, {"ids": ids, "worker": self.settings.worker_id})
        return StreamOutcome(full=len(rows) == batch)

    async def _failed(
        self, stream: str, rows: Sequence[Any], ids: list[str], exc: Exception
    ) -> StreamOutcome:
        attempts = int(rows[0].attempts) + 1
        delay = retry_delay(attempts)
        dead = attempts >= self.settings.outbox_max_attempts
        log.warning(
            "%s: publishing %d events failed (attempt %d): %r; %s",
            stream,
            len(ids),
            attempts,
            exc,
            "dead-lettered" if dead else f"retry in {delay:.1f}s",
        )
        async with self.engine.begin() as conn:
            await conn.execute(
                MARK_FAILED,
                {
                    "ids": ids,
                    "error": repr(exc)[:1000],
                    "worker": self.settings.worker_id,
                    "max_attempts": self.settings.outbox_max_attempts,
                    "delay": delay,
                },
            )
        try:
            await self.publisher.count_failure(stream)
        except (RedisError, OSError):
            log.debug("failure counter not updated: Redis unavailable")
        return StreamOutcome(retry_in=0.0 if dead else delay)
