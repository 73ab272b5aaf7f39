"""One dispatch iteration: claim streams, publish each stream's next batch, record the outcome."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import msgspec

from caracal.redis_client import REDIS_FAILURES
from caracal.settings import Settings
from caracal_dispatcher.leases import StreamLeases
from caracal_dispatcher.publisher import PendingEvent, SignedBatch, StreamPublisher

log = logging.getLogger("caracal.dispatcher")

MAX_BACKOFF_S = 60.0

# Streams with pending events, by a loose index scan (one index probe per stream, not per row).
PENDING_STREAMS = """
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

# Only rows whose transaction is older than every transaction still running: no earlier
# transaction can commit into this stream's past after we publish. ($1 stream, $2 batch size)
_PENDING_ROWS = """
    SELECT id, payload_json::text AS payload, txid::text AS tx, seq, attempts, traceparent,
           EXTRACT(EPOCH FROM available_at - now())::float8 AS wait_s,
           (EXTRACT(EPOCH FROM now() - created_at) * 1000)::float8 AS age_ms
      FROM event_outbox
     WHERE stream_name = $1 AND dispatched_at IS NULL AND dead_at IS NULL
       AND txid < pg_snapshot_xmin(pg_current_snapshot())
"""
NEXT_BATCH = _PENDING_ROWS + " ORDER BY event_outbox.txid, event_outbox.seq LIMIT $2"
# The same after the last (txid, seq) this dispatcher published ($3/$4): the index walk starts there
# instead of stepping over every row delivered since the last vacuum.
NEXT_BATCH_AFTER = (
    _PENDING_ROWS
    + " AND (txid, seq) > ($3::text::xid8, $4::bigint) ORDER BY event_outbox.txid, event_outbox.seq LIMIT $2"
)

MARK_DISPATCHED = """
    UPDATE event_outbox
       SET dispatched_at = now(), attempts = attempts + 1, locked_until = NULL, locked_by = $2,
           last_error = NULL
     WHERE id = ANY($1::text[])
"""

# ($1 ids, $2 error, $3 worker, $4 max attempts, $5 delay in seconds)
MARK_FAILED = """
    UPDATE event_outbox
       SET attempts = attempts + 1, last_error = $2, locked_by = $3,
           available_at = CASE WHEN attempts + 1 >= $4::int THEN 'infinity'::timestamptz
                               ELSE now() + make_interval(secs => $5::float8) END,
           dead_at = CASE WHEN attempts + 1 >= $4::int THEN now() END
     WHERE id = ANY($1::text[])
"""

# ($1 stream, $2 worker, $3/$4 the high-water mark (txid, seq))
RECONCILE = """
    UPDATE event_outbox SET dispatched_at = now(), locked_by = $2
     WHERE stream_name = $1 AND dispatched_at IS NULL AND dead_at IS NULL
       AND (txid, seq) <= ($3::text::xid8, $4::bigint)
"""

DRAIN_BUDGET_S = 2.0


def retry_delay(attempts: int) -> float:
    """2^attempts seconds, capped at 60 s, jittered down by up to 30 % so retries spread out."""
    base = min(MAX_BACKOFF_S, 2.0 ** min(attempts, 16))
    return base * (1 - 0.3 * random.random())


@dataclass(slots=True)
class AdaptiveBatch:
    """Each stream's batch size: doubles while batches come back full, up to `cap`; a short batch
    (or an idle stream) goes back to `start`, so a lone event is still read and sent at once."""

    start: int
    cap: int
    sizes: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.cap = max(self.cap, self.start)  # a cap below the start size means: never grow

    def size(self, stream: str) -> int:
        return self.sizes.get(stream, self.start)

    def after(self, stream: str, size: int, full: bool) -> int:
        """Record how a batch read with limit `size` came back; returns the next batch's limit."""
        if not full:
            self.reset(stream)
            return self.start
        grown = min(size * 2, self.cap)
        self.sizes[stream] = grown
        return grown

    def reset(self, stream: str) -> None:
        self.sizes.pop(stream, None)

    def keep_only(self, streams: set[str]) -> None:
        """Streams with nothing pending (or no longer held) start small again."""
        for stream in self.sizes.keys() - streams:
            del self.sizes[stream]


@dataclass(frozen=True, slots=True)
class StreamOutcome:
    full: bool = False
    retry_in: float | None = None


_decode_payload = msgspec.json.Decoder(dict[str, Any]).decode


def _event(row: Any) -> PendingEvent:
    return PendingEvent(
        row["id"], int(row["tx"]), int(row["seq"]), _decode_payload(row["payload"]), row["traceparent"]
    )


class Dispatcher:
    """Publishes the outbox through one Postgres session (its leases' connection) and one Redis client."""

    def __init__(self, settings: Settings, publisher: StreamPublisher, leases: StreamLeases) -> None:
        self.settings = settings
        self.publisher = publisher
        self.leases = leases
        self.drain_budget_s = DRAIN_BUDGET_S
        self.batches = AdaptiveBatch(settings.outbox_batch, settings.outbox_batch_max)
        # per held stream in the middle of a backlog: the last (txid, seq) published and marked, so the
        # next drain need not step over every row delivered since the last vacuum. Everything at or
        # below it is delivered: rows become readable in (txid, seq) order (only transactions older
        # than every running one) and a requeue takes a new txid. It is kept only while drains end on
        # a full batch, and dropped when the stream is (re)claimed or a drain fails part-way; then
        # the next read starts from the beginning again.
        self.positions: dict[str, tuple[int, int]] = {}
        # A dispatcher holding no lease is a standby: it only has to notice a holder gone, so it
        # looks once per poll interval, not on every commit's wake-up hint (which the holder serves).
        self.standby_until = 0.0

    async def iteration(self) -> float:
        """Drain each held stream in turn; returns how long to wait before the next iteration."""
        try:
            return await self._iteration()
        except Exception:
            self.leases.suspect()  # whatever failed, the next iteration first checks the session
            raise

    async def _iteration(self) -> float:
        if not self.leases.held and (wait := self.standby_until - time.monotonic()) > 0:
            return wait
        conn = await self.leases.connection()
        if not self.publisher.origin:
            self.publisher.origin = str(await conn.fetchval("SELECT origin FROM outbox_origin"))
        streams = [row["name"] for row in await conn.fetch(PENDING_STREAMS)]
        for stream in await self.leases.claim(streams):
            await self.reconcile(stream)
        self.batches.keep_only(set(streams) & self.leases.held)
        for caught_up in self.positions.keys() - (set(streams) & self.leases.held):
            del self.positions[caught_up]
        delay = self.settings.outbox_poll_ms / 1000
        if streams and not self.leases.held:
            self.standby_until = time.monotonic() + delay
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
        self.positions.pop(stream, None)
        try:
            mark = await self.publisher.high_water_mark(stream)
        except REDIS_FAILURES as exc:
            # Reconciling only saves re-sending: the publish script skips what is at or below the mark
            # anyway. Raising here would stop every stream's dispatch, and count no try, while Redis is down.
            log.warning("%s: not reconciled (%r); the publish script still keeps repeats out", stream, exc)
            return
        if mark is None:
            return
        conn = await self.leases.connection()
        status = await conn.execute(RECONCILE, stream, self.settings.worker_id, str(mark[0]), mark[1])
        marked = int(status.split()[-1])
        if marked:
            log.info("%s: %d events were published before a restart; marked delivered", stream, marked)

    async def dispatch_stream(self, stream: str) -> StreamOutcome:
        """Publish the stream's next batches (see _drain); a failure part-way forgets its position."""
        try:
            return await self._drain(stream)
        except BaseException:
            self.positions.pop(stream, None)
            raise

    async def _drain(self, stream: str) -> StreamOutcome:
        """Publish batch after batch while they come back full, for up to `drain_budget_s`.

        While batch k goes to Redis, batch k+1 is read (by keyset after k) and signed while batch
        k-1 is marked delivered, so Redis, Postgres and the signing work at the same time. A crash
        leaves at most two batches published but unmarked, which the high-water mark keeps out of
        the stream. Batch k+1 is read with the size that batch k's fullness chose (see AdaptiveBatch).
        """
        size = self.batches.size(stream)
        conn = await self.leases.connection()
        after = self.positions.pop(stream, None)
        if after is None:
            rows = await conn.fetch(NEXT_BATCH, stream, size)
        else:
            rows = await conn.fetch(NEXT_BATCH_AFTER, stream, size, str(after[0]), after[1])
        signed: SignedBatch | None = None
        published: list[str] = []
        outcome = StreamOutcome()
        deadline = time.monotonic() + self.drain_budget_s
        while rows:
            if rows[0]["wait_s"] > 0:
                self.batches.reset(stream)
                outcome = StreamOutcome(retry_in=float(rows[0]["wait_s"]))
                break
            full = len(rows) == size
            size = self.batches.after(stream, size, full)
            more = full and time.monotonic() < deadline
            batch = self._signed(stream, rows) if signed is None else signed
            failure, following, signed = await self._send_and_read(
                conn, stream, batch, int(rows[0]["age_ms"]), published=published, limit=size if more else 0
            )
            published = [event.id for event in batch.events]
            if failure is not None:
                self.batches.reset(stream)
                return await self._failed(stream, rows, published, failure)
            last = (batch.events[-1].txid, batch.events[-1].seq)
            if not more:
                outcome = StreamOutcome(full=full)
                break
            rows = following
        if published:
            await self._mark_dispatched(conn, published)
            if outcome.full:  # stopped by the time budget mid-backlog: the next read starts after it
                self.positions[stream] = last
        return outcome

    def _signed(self, stream: str, rows: Sequence[Any]) -> SignedBatch:
        return self.publisher.sign(stream, [_event(row) for row in rows])

    async def _send_and_read(
        self,
        conn: asyncpg.Connection,
        stream: str,
        batch: SignedBatch,
        lag_ms: int,
        *,
        published: list[str],
        limit: int,
    ) -> tuple[Exception | None, list[Any], SignedBatch | None]:
        """Publish `batch` while reading up to `limit` rows of the next batch and marking `published`.

        Returns the Redis failure, if publishing failed, and the next batch's rows, signed.
        """
        results: tuple[Any, ...] = await asyncio.gather(
            self._read_and_mark(conn, stream, batch.events[-1], limit, published),
            self.publisher.publish(stream, batch, lag_ms),
            return_exceptions=True,
        )
        following, sent = results
        if isinstance(following, BaseException):
            raise following
        if isinstance(sent, REDIS_FAILURES):
            return sent, [], None
        if isinstance(sent, BaseException):
            raise sent
        rows, signed = following
        return None, rows, signed

    async def _read_and_mark(
        self, conn: asyncpg.Connection, stream: str, last: PendingEvent, limit: int, published: list[str]
    ) -> tuple[list[Any], SignedBatch | None]:
        """The rows after `last` (up to `limit`), signed while `published` is marked delivered.

        The read comes first (it is short; the mark rewrites every row), and gather starts its tasks
        in order, so the mark is on the wire before the signing holds the event loop.
        """
        rows = await conn.fetch(NEXT_BATCH_AFTER, stream, limit, str(last.txid), last.seq) if limit else []
        marking, signing = self._mark_dispatched(conn, published), self._sign_rows(stream, rows)
        _, signed = await asyncio.gather(marking, signing)
        return rows, signed

    async def _sign_rows(self, stream: str, rows: list[Any]) -> SignedBatch | None:
        return self._signed(stream, rows) if rows else None

    async def _mark_dispatched(self, conn: asyncpg.Connection, ids: list[str]) -> None:
        if ids:
            await conn.execute(MARK_DISPATCHED, ids, self.settings.worker_id)

    async def _failed(
        self, stream: str, rows: Sequence[Any], ids: list[str], exc: Exception
    ) -> StreamOutcome:
        attempts = int(rows[0]["attempts"]) + 1
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
        conn = await self.leases.connection()
        await conn.execute(
            MARK_FAILED,
            ids,
            repr(exc)[:1000],
            self.settings.worker_id,
            self.settings.outbox_max_attempts,
            delay,
        )
        try:
            await self.publisher.count_failure(stream)
        except REDIS_FAILURES:
            log.debug("failure counter not updated: Redis unavailable")
        return StreamOutcome(retry_in=0.0 if dead else delay)
