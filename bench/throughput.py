"""Throughput: one dispatcher draining a 100k-event backlog, against raw redis-py XADD pipelines."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import asyncpg
import redis
from redis.asyncio import Redis

from bench.common import (
    BenchEnv,
    BenchError,
    CpuMeter,
    Dispatcher,
    process_sampler,
    ratio,
    reset,
    running_dispatcher,
    say,
    server_samplers,
)
from caracal.events import CHANGES, Scalar, stream_entry, verify
from caracal.ids import new_id

EVENTS = 100_000
BATCHES = (32, 256)
POLL_MS = 250
PIPELINE = 32
DRAIN_DEADLINE_S = 100.0
TARGET_RATIO = 0.5
BASELINE_STREAM = "bench.baseline.throughput"
ZONE_ID = new_id()

# One statement: txid defaults to pg_current_xact_id() (all rows share it), seq is an identity column.
PREFILL = """
INSERT INTO event_outbox (id, stream_name, payload_json)
SELECT uuidv7()::text, $1,
       jsonb_build_object('event', 'zone.updated', 'zone_id', $2::text,
                          'entity_type', 'zone', 'entity_id', uuidv7()::text)
  FROM generate_series(1, $3)
"""

FINISHED = """
SELECT EXTRACT(EPOCH FROM max(dispatched_at))::float8 AS last_at, count(dispatched_at) AS dispatched
  FROM event_outbox
"""

Entries = list[tuple[str, dict[str, Scalar]]]


@dataclass(frozen=True)
class Drain:
    batch: int
    events: int  # rows marked dispatched: EVENTS, unless the deadline passed first
    startup_s: float  # spawn until the first entry reached the stream (imports, connections, 1st batch)
    drain_s: float  # first stream entry until the last row was marked dispatched
    cpu: dict[str, float] = field(default_factory=dict)  # % of one core, spawn until drained

    @property
    def complete(self) -> bool:
        return self.events == EVENTS

    @property
    def rate(self) -> float:
        return self.events / self.drain_s

    @property
    def total_rate(self) -> float:
        return self.events / (self.startup_s + self.drain_s)


def _payload() -> dict[str, Scalar]:
    return {"event": "zone.updated", "zone_id": ZONE_ID, "entity_type": "zone", "entity_id": new_id()}


def _xadd_baseline(redis_url: str, key: bytes, entries: Entries) -> float:
    """Events/s of plain XADDs of the same signed entries, PIPELINE per round trip."""
    client = redis.Redis.from_url(redis_url)
    try:
        client.delete(BASELINE_STREAM)
        started = time.perf_counter()
        for start in range(0, len(entries), PIPELINE):
            pipe = client.pipeline(transaction=False)
            for outbox_id, payload in entries[start : start + PIPELINE]:
                pipe.xadd(BASELINE_STREAM, stream_entry(key, CHANGES, outbox_id, payload))
            pipe.execute()
        elapsed = time.perf_counter() - started
        if client.xlen(BASELINE_STREAM) != len(entries):
            raise BenchError("baseline stream does not hold every entry")
        return len(entries) / elapsed
    finally:
        client.delete(BASELINE_STREAM)
        client.close()


async def _baseline(bench: BenchEnv, entries: Entries) -> float:
    say(f"baseline: redis-py XADD of {EVENTS:,} signed entries, {PIPELINE} a pipeline, to {BASELINE_STREAM}")
    rate = await asyncio.to_thread(_xadd_baseline, bench.redis_url, bench.hmac_key, entries)
    say(f"baseline: {rate:,.0f} events/s")
    return rate


async def _prefill(bench: BenchEnv) -> None:
    conn = await bench.connect()
    try:
        started = time.perf_counter()
        await conn.execute(PREFILL, CHANGES, ZONE_ID, EVENTS)
        await conn.execute("ANALYZE event_outbox")  # what autovacuum does to a backlog built over time
        say(f"pre-filled {EVENTS:,} caracal.changes events in {time.perf_counter() - started:.2f} s")
    finally:
        await conn.close()


class _Progress:
    """A line every 2 s: entries so far and the rate since the previous line."""

    def __init__(self) -> None:
        self.at, self.length = time.monotonic(), 0

    def report(self, length: int) -> None:
        now = time.monotonic()
        if now - self.at >= 2.0:
            recent = (length - self.length) / (now - self.at)
            say(f"  {length:,} / {EVENTS:,} entries in {CHANGES} ({recent:,.0f}/s lately)")
            self.at, self.length = now, length


async def _wait_drained(dispatcher: Dispatcher, redis: Redis, conn: asyncpg.Connection) -> bool:
    """True once every event is in the stream and marked dispatched; False if the deadline came first."""
    deadline = time.monotonic() + DRAIN_DEADLINE_S
    progress = _Progress()
    while time.monotonic() < deadline:
        dispatcher.check_alive()
        length = await redis.xlen(CHANGES)
        if length >= EVENTS and (await conn.fetchrow(FINISHED))["dispatched"] == EVENTS:
            return True
        progress.report(length)
        await asyncio.sleep(0.1)
    say(f"  deadline: not drained within {DRAIN_DEADLINE_S:.0f} s; the figures below cover what was")
    return False


async def _check_stream(bench: BenchEnv, redis: Redis, expected: int) -> float:
    """As many entries as rows dispatched, signed; returns when the first was added (Redis clock, s)."""
    length = await redis.xlen(CHANGES)
    if length != expected:
        raise BenchError(f"{CHANGES} holds {length:,} entries for {expected:,} rows marked dispatched")
    first, last = await redis.xrange(CHANGES, count=1), await redis.xrevrange(CHANGES, count=1)
    if not first:
        raise BenchError(f"nothing reached {CHANGES}")
    for entry_id, raw in (first[0], last[0]):
        if not verify(bench.hmac_key, CHANGES, {k.decode(): v.decode() for k, v in raw.items()}):
            raise BenchError(f"entry {entry_id!r} has a bad _sig")
    return int(first[0][0].split(b"-")[0]) / 1000


async def _drain(bench: BenchEnv, batch: int) -> Drain:
    await reset(bench, CHANGES)
    await _prefill(bench)
    redis, conn = bench.redis(), await bench.connect()
    try:
        overrides = {"CARACAL_OUTBOX_BATCH": str(batch), "CARACAL_OUTBOX_POLL_MS": str(POLL_MS)}
        with running_dispatcher(bench, f"batch{batch}", **overrides) as dispatcher:
            meter = CpuMeter({"dispatcher": process_sampler(dispatcher.pid), **server_samplers(bench)})
            meter.start()
            await _wait_drained(dispatcher, redis, conn)
            cpu = meter.percent()
        finished = await conn.fetchrow(FINISHED)
        first_at = await _check_stream(bench, redis, finished["dispatched"])
    finally:
        await redis.aclose()
        await conn.close()
    events, last_at = finished["dispatched"], finished["last_at"]
    return Drain(batch, events, first_at - dispatcher.spawned_at, last_at - first_at, cpu)


def _report(drain: Drain, baseline: float) -> list[str]:
    met = "met" if drain.rate / baseline >= TARGET_RATIO else "NOT met"
    drained = "" if drain.complete else f", DEADLINE: only {drain.events:,} of {EVENTS:,} dispatched"
    lines = [
        f"batch {drain.batch}: dispatcher {drain.rate:,.0f} events/s (drain {drain.drain_s:.2f} s{drained}), "
        f"baseline XADD {baseline:,.0f} events/s, ratio {ratio(drain.rate, baseline)} "
        f"(target >= {TARGET_RATIO}: {met})",
        f"batch {drain.batch}: with process start-up ({drain.startup_s:.2f} s to the first entry) "
        f"{drain.total_rate:,.0f} events/s, ratio {ratio(drain.total_rate, baseline)}",
        f"batch {drain.batch}: CPU while draining, % of one core: "
        + ", ".join(f"{name} {percent:.0f} %" for name, percent in drain.cpu.items()),
    ]
    for line in lines:
        say(line)
    return lines


async def run(bench: BenchEnv) -> list[str]:
    say(f"throughput: drain {EVENTS:,} pre-filled events with one dispatcher, batches {BATCHES}")
    entries = [(new_id(), _payload()) for _ in range(EVENTS)]
    lines: list[str] = []
    for batch in BATCHES:
        baseline = await _baseline(bench, entries)
        drain = await _drain(bench, batch)
        lines += _report(drain, baseline)
    await reset(bench, CHANGES)
    return lines
