"""Throughput: one dispatcher draining pre-filled backlogs, against raw redis-py XADD pipelines (B_x)."""

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
from caracal.events import CHANGES, Scalar, stats_key, stream_entry, verify
from caracal.ids import new_id

BASELINE_EVENTS = 100_000
PREFILL_CHUNK = 100_000
PIPELINE = 32
TARGET_RATIO = 0.9  # issue 6: the dispatcher at its default settings
TARGET_BACKLOG_S = 30.0  # issue 6: a 1M-event backlog
BASELINE_STREAM = "bench.baseline.throughput"
ZONE_ID = new_id()


@dataclass(frozen=True)
class Run:
    """One drain: a backlog of `events` and the dispatcher's settings (empty: the defaults)."""

    tag: str  # names the dispatcher's log file
    label: str
    events: int
    overrides: dict[str, str] = field(default_factory=dict)

    @property
    def deadline_s(self) -> float:
        return 60.0 + self.events / 2_000  # room for a slow shared machine, never unbounded


RUNS = (
    Run(
        "fixed32", "batch 32, growth off (the previous default)", 100_000, {"CARACAL_OUTBOX_BATCH_MAX": "32"}
    ),
    Run("defaults", "defaults", 100_000),
    Run("backlog1m", "1M backlog, defaults", 1_000_000),
)

# One statement per chunk: txid defaults to pg_current_xact_id() (a chunk shares it), seq is an identity.
PREFILL = """
INSERT INTO event_outbox (id, stream_name, payload_json)
SELECT uuidv7()::text, $1,
       jsonb_build_object('event', 'zone.updated', 'zone_id', $2::text,
                          'entity_type', 'zone', 'entity_id', uuidv7()::text)
  FROM generate_series(1, $3)
"""

# The first batch is marked while the second is published, so min(dispatched_at) is about when the
# first entry reached the stream (the stream itself is trimmed to its MAXLEN on a large backlog).
FINISHED = """
SELECT EXTRACT(EPOCH FROM min(dispatched_at))::float8 AS first_at,
       EXTRACT(EPOCH FROM max(dispatched_at))::float8 AS last_at, count(dispatched_at) AS dispatched
  FROM event_outbox
"""

Entries = list[tuple[str, dict[str, Scalar]]]


@dataclass(frozen=True)
class Drain:
    run: Run
    events: int  # rows marked dispatched: run.events, unless the deadline passed first
    prefill_s: float
    startup_s: float  # spawn until the first batch was out (imports, connections, 1st batch)
    drain_s: float  # first batch out until the last row was marked dispatched
    script_ms: float  # Redis time per publish-script call: Redis serves no one else meanwhile
    cpu: dict[str, float] = field(default_factory=dict)  # % of one core, spawn until drained

    @property
    def complete(self) -> bool:
        return self.events == self.run.events

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
    say(f"B_x: redis-py XADD of {len(entries):,} signed entries, {PIPELINE} a pipeline, to {BASELINE_STREAM}")
    rate = await asyncio.to_thread(_xadd_baseline, bench.redis_url, bench.hmac_key, entries)
    say(f"B_x: {rate:,.0f} events/s")
    return rate


async def _prefill(bench: BenchEnv, events: int) -> float:
    """The backlog, in INSERT ... generate_series chunks (one transaction each); returns seconds taken."""
    say(f"pre-filling {events:,} {CHANGES} events, {PREFILL_CHUNK:,} per INSERT ... generate_series")
    conn = await bench.connect()
    try:
        started = time.perf_counter()
        for done in range(0, events, PREFILL_CHUNK):
            chunk = min(PREFILL_CHUNK, events - done)
            await conn.execute(PREFILL, CHANGES, ZONE_ID, chunk)
            if events > PREFILL_CHUNK:
                say(f"  {done + chunk:,} / {events:,} rows ({time.perf_counter() - started:.1f} s)")
        await conn.execute("ANALYZE event_outbox")  # what autovacuum does to a backlog built over time
        elapsed = time.perf_counter() - started
        say(f"pre-filled {events:,} events in {elapsed:.2f} s")
        return elapsed
    finally:
        await conn.close()


class _Progress:
    """A line every 2 s: rows marked dispatched so far and the rate since the previous line."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.at, self.done = time.monotonic(), 0

    def report(self, done: int) -> None:
        now = time.monotonic()
        if now - self.at >= 2.0:
            recent = (done - self.done) / (now - self.at)
            say(f"  {done:,} / {self.total:,} events dispatched ({recent:,.0f}/s lately)")
            self.at, self.done = now, done


async def _dispatched(redis: Redis) -> int:
    """Entries the publish script added to the stream (its stats hash; the stream itself is trimmed)."""
    return int(await redis.hget(stats_key(CHANGES), "dispatched") or 0)


async def _wait_drained(run: Run, dispatcher: Dispatcher, redis: Redis, conn: asyncpg.Connection) -> bool:
    """True once every event is in the stream and marked dispatched; False if the deadline came first."""
    deadline = time.monotonic() + run.deadline_s
    progress = _Progress(run.events)
    while time.monotonic() < deadline:
        dispatcher.check_alive()
        added = await _dispatched(redis)
        if added >= run.events and (await conn.fetchrow(FINISHED))["dispatched"] == run.events:
            return True
        progress.report(added)
        await asyncio.sleep(0.1)
    say(f"  deadline: not drained within {run.deadline_s:.0f} s; the figures below cover what was")
    return False


async def _check_stream(bench: BenchEnv, redis: Redis, expected: int) -> None:
    """As many entries added as rows dispatched, none skipped as a repeat, the newest ones signed."""
    counts = await redis.hmget(stats_key(CHANGES), ["dispatched", "duplicates_skipped"])
    added, skipped = (int(count or 0) for count in counts)
    if added != expected or skipped:
        raise BenchError(
            f"{CHANGES}: {added} added, {skipped} skipped for {expected:,} rows marked dispatched"
        )
    newest = await redis.xrevrange(CHANGES, count=10)
    if not newest:
        raise BenchError(f"nothing reached {CHANGES}")
    for entry_id, raw in newest:
        if not verify(bench.hmac_key, CHANGES, {k.decode(): v.decode() for k, v in raw.items()}):
            raise BenchError(f"entry {entry_id!r} has a bad _sig")


async def _script_ms(redis: Redis) -> float:
    stats = (await redis.info("commandstats")).get("cmdstat_evalsha", {})
    return float(stats.get("usec_per_call", 0.0)) / 1000


async def _drain(bench: BenchEnv, run: Run) -> Drain:
    await reset(bench, CHANGES)
    prefill_s = await _prefill(bench, run.events)
    redis, conn = bench.redis(), await bench.connect()
    try:
        await redis.config_resetstat()
        with running_dispatcher(bench, run.tag, **run.overrides) as dispatcher:
            meter = CpuMeter({"dispatcher": process_sampler(dispatcher.pid), **server_samplers(bench)})
            meter.start()
            await _wait_drained(run, dispatcher, redis, conn)
            cpu = meter.percent()
        finished = await conn.fetchrow(FINISHED)
        await _check_stream(bench, redis, finished["dispatched"])
        script_ms = await _script_ms(redis)
    finally:
        await redis.aclose()
        await conn.close()
    events, first_at, last_at = finished["dispatched"], finished["first_at"], finished["last_at"]
    startup_s, drain_s = first_at - dispatcher.spawned_at, last_at - first_at
    return Drain(run, events, prefill_s, startup_s, drain_s, script_ms, cpu)


def _report(drain: Drain, baseline: float) -> list[str]:
    name = drain.run.label
    drained = (
        "" if drain.complete else f", DEADLINE: only {drain.events:,} of {drain.run.events:,} dispatched"
    )
    lines = [
        f"{name}: dispatcher {drain.rate:,.0f} events/s (drain {drain.drain_s:.2f} s{drained}), "
        f"B_x {baseline:,.0f} events/s, ratio {ratio(drain.rate, baseline)}" + _target(drain, baseline),
        f"{name}: with process start-up ({drain.startup_s:.2f} s to the first batch) "
        f"{drain.total_rate:,.0f} events/s, ratio {ratio(drain.total_rate, baseline)}",
        f"{name}: CPU while draining, % of one core: "
        + ", ".join(f"{group} {percent:.0f} %" for group, percent in drain.cpu.items())
        + f"; Redis {drain.script_ms:.2f} ms per publish script call",
    ]
    if drain.run.events >= 1_000_000:
        met = "met" if drain.complete and drain.drain_s < TARGET_BACKLOG_S else "NOT met"
        lines.append(
            f"{name}: {drain.events:,} events drained in {drain.drain_s:.1f} s "
            f"(target < {TARGET_BACKLOG_S:.0f} s: {met}; ratio to the target "
            f"{ratio(drain.drain_s, TARGET_BACKLOG_S)}), pre-filled in {drain.prefill_s:.1f} s"
        )
    for line in lines:
        say(line)
    return lines


def _target(drain: Drain, baseline: float) -> str:
    if drain.run.overrides:
        return ""
    met = "met" if drain.rate / baseline >= TARGET_RATIO else "NOT met"
    return f" (target at defaults >= {TARGET_RATIO}: {met})"


async def run(bench: BenchEnv) -> list[str]:
    say(f"throughput: one dispatcher drains pre-filled backlogs ({', '.join(r.label for r in RUNS)})")
    entries = [(new_id(), _payload()) for _ in range(BASELINE_EVENTS)]
    lines: list[str] = []
    for each in RUNS:
        say(f"--- {each.label}: {each.events:,} events ---")
        baseline = await _baseline(bench, entries)
        drain = await _drain(bench, each)
        lines += _report(drain, baseline)
    await reset(bench, CHANGES)
    return lines
