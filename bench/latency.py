"""Latency: commit-to-stream time of events written at a steady rate, against a plain XADD + XREAD."""

from __future__ import annotations

import asyncio
import multiprocessing
import queue
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from multiprocessing.synchronize import Event as EventType
from typing import Any

import redis
from redis.asyncio import Redis
from sqlalchemy import text

from bench.common import BenchEnv, BenchError, percentile, ratio, reset, running_dispatcher, say, wait_ready
from caracal.db.engine import create_engine, transaction
from caracal.events import CHANGES, Scalar, stream_entry
from caracal.ids import new_id
from caracal.outbox import WAKE_CHANNEL, record_event

RATE_PER_S = 200
DURATION_S = 15.0
BASELINE_DURATION_S = 5.0
READ_GRACE_S = 10.0
TARGET_P50_MS = 10.0
TARGET_P99_MS = 50.0
BASELINE_STREAM = "bench.baseline.latency"
ZONE_ID = new_id()


def read_arrivals(
    redis_url: str, stream: str, expected: int, timeout_s: float, ready: EventType, out: Any
) -> None:
    """Reader process: XREAD BLOCK on the stream, noting when each outbox_id arrives (CLOCK_MONOTONIC)."""
    client = redis.Redis.from_url(redis_url)
    arrivals: dict[str, float] = {}
    last = "0-0"
    client.ping()
    ready.set()
    deadline = time.monotonic() + timeout_s
    while len(arrivals) < expected and time.monotonic() < deadline:
        for _, entries in client.xread({stream: last}, count=1000, block=200) or []:
            now = time.monotonic()
            for entry_id, fields in entries:
                arrivals[fields[b"outbox_id"].decode()] = now
                last = entry_id
    client.close()
    out.put(arrivals)


class Reader:
    """The reader in its own process, so the writer's event loop never delays its clock readings."""

    def __init__(self, redis_url: str, stream: str, expected: int, timeout_s: float) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.ready, self.out = ctx.Event(), ctx.Queue()
        self.timeout_s = timeout_s
        self.process = ctx.Process(
            target=read_arrivals, args=(redis_url, stream, expected, timeout_s, self.ready, self.out)
        )

    async def start(self) -> None:
        self.process.start()
        if not await asyncio.to_thread(self.ready.wait, 30):
            raise BenchError("reader process did not start")

    async def arrivals(self) -> dict[str, float]:
        try:
            found: dict[str, float] = await asyncio.to_thread(self.out.get, True, self.timeout_s + 30)
        except queue.Empty:
            raise BenchError("reader process returned nothing") from None
        return found

    def close(self) -> None:
        if self.process.is_alive():
            self.process.terminate()
        self.process.join(10)


@dataclass(frozen=True)
class Latencies:
    sent: int
    lost: int
    p50: float
    p99: float
    max: float


def _latencies(sent: dict[str, float], arrived: dict[str, float]) -> Latencies:
    found = sorted((arrived[key] - at) * 1000 for key, at in sent.items() if key in arrived)
    if not found:
        raise BenchError("no entry reached the stream")
    lost = len(sent) - len(found)
    return Latencies(len(sent), lost, percentile(found, 50), percentile(found, 99), found[-1])


def _payload(i: int) -> dict[str, Scalar]:
    return {"event": "zone.updated", "zone_id": ZONE_ID, "entity_type": "zone", "entity_id": f"bench-{i}"}


async def _steady(step: Callable[[int], Awaitable[None]], duration: float) -> float:
    """Call step(i) RATE_PER_S times a second on a fixed schedule; returns the rate achieved."""
    count = int(RATE_PER_S * duration)
    started = time.monotonic()
    for i in range(count):
        delay = started + i / RATE_PER_S - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        await step(i)
    return count / (time.monotonic() - started)


async def _measure(
    bench: BenchEnv, stream: str, duration: float, write: Callable[[dict[str, float]], Callable[[int], Any]]
) -> Latencies:
    reader = Reader(bench.redis_url, stream, int(RATE_PER_S * duration), duration + READ_GRACE_S)
    sent: dict[str, float] = {}
    try:
        await reader.start()
        achieved = await _steady(write(sent), duration)
        say(f"  wrote {len(sent):,} events at {achieved:.0f}/s; waiting for the reader")
        arrived = await reader.arrivals()
    finally:
        reader.close()
    return _latencies(sent, arrived)


async def _baseline(bench: BenchEnv, client: Redis) -> Latencies:
    say(f"baseline: plain XADD -> XREAD BLOCK round trip, {RATE_PER_S}/s for {BASELINE_DURATION_S:.0f} s")
    await client.delete(BASELINE_STREAM)

    def write(sent: dict[str, float]) -> Callable[[int], Awaitable[None]]:
        async def step(i: int) -> None:
            outbox_id = new_id()
            fields = stream_entry(bench.hmac_key, CHANGES, outbox_id, _payload(i))
            sent[outbox_id] = time.monotonic()
            await client.xadd(BASELINE_STREAM, fields)  # type: ignore[arg-type]

        return step

    try:
        return await _measure(bench, BASELINE_STREAM, BASELINE_DURATION_S, write)
    finally:
        await client.delete(BASELINE_STREAM)


async def _outbox(bench: BenchEnv, client: Redis) -> Latencies:
    say(f"outbox: record_event + commit, then PUBLISH {WAKE_CHANNEL}; {RATE_PER_S}/s for {DURATION_S:.0f} s")
    engine = create_engine(bench.settings, pool_size=2)

    def write(committed: dict[str, float]) -> Callable[[int], Awaitable[None]]:
        async def step(i: int) -> None:
            async with transaction(engine) as conn:
                outbox_id = await record_event(conn, CHANGES, _payload(i))
            committed[outbox_id] = time.monotonic()
            await client.publish(WAKE_CHANNEL, "1")

        return step

    try:
        async with engine.connect() as conn:  # the pool's connection is open before the clock starts
            await conn.execute(text("SELECT 1"))
        return await _measure(bench, CHANGES, DURATION_S, write)
    finally:
        await engine.dispose()


def _report(name: str, found: Latencies) -> None:
    say(
        f"{name}: {found.sent:,} events, {found.lost} missing; "
        f"p50 {found.p50:.2f} ms, p99 {found.p99:.2f} ms, max {found.max:.2f} ms"
    )


def _summary(outbox: Latencies, base: Latencies) -> list[str]:
    p50_met = "met" if outbox.p50 <= TARGET_P50_MS else "NOT met"
    p99_met = "met" if outbox.p99 <= TARGET_P99_MS else "NOT met"
    return [
        f"commit-to-stream p50 {outbox.p50:.2f} ms (target <= {TARGET_P50_MS:.0f}: {p50_met}), "
        f"p99 {outbox.p99:.2f} ms (target <= {TARGET_P99_MS:.0f}: {p99_met}), max {outbox.max:.2f} ms; "
        f"{outbox.lost} of {outbox.sent:,} missing",
        f"plain XADD+XREAD baseline p50 {base.p50:.2f} ms, p99 {base.p99:.2f} ms, max {base.max:.2f} ms",
        f"ratio to baseline: p50 {ratio(outbox.p50, base.p50)}, p99 {ratio(outbox.p99, base.p99)}, "
        f"max {ratio(outbox.max, base.max)}",
    ]


async def run(bench: BenchEnv) -> list[str]:
    say("latency: commit-to-stream with a dispatcher running (default batch and poll interval)")
    await reset(bench, CHANGES)
    client = bench.redis()
    try:
        base = await _baseline(bench, client)
        _report("baseline", base)
        with running_dispatcher(bench, "latency") as dispatcher:
            await wait_ready(bench, dispatcher)
            outbox = await _outbox(bench, client)
            dispatcher.check_alive()
        _report("outbox", outbox)
    finally:
        await client.aclose()
    await reset(bench, CHANGES)
    lines = _summary(outbox, base)
    for line in lines:
        say(line)
    return lines
