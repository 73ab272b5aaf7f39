"""The reaper: jobs run under their advisory lock, again at once while work remains, and wake the
dispatcher after committing events; outbox retention is its first job."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
import pytest_asyncio
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from caracal.db.engine import create_engine
from caracal.db.locks import OUTBOX_PRUNE_LOCK_KEY
from caracal.outbox import WAKE_CHANNEL, prune_delivered, record_event
from caracal.settings import Settings
from caracal.worker import StopSignal, poll_loop
from caracal_reaper.job import Job, Outcome
from caracal_reaper.jobs import OUTBOX_PRUNE
from caracal_reaper.runner import Reaper
from tests.support import eventually

DEADLINE_S = 20.0
HOUR_MS = 3_600_000


async def _events(engine: AsyncEngine, count: int, dispatched_hours_ago: float | None) -> None:
    async with engine.begin() as conn:
        for n in range(count):
            await record_event(conn, "caracal.changes", {"event": "test", "n": n})
        if dispatched_hours_ago is not None:
            await conn.execute(
                text(
                    "UPDATE event_outbox SET dispatched_at = now() - make_interval(secs => :s) "
                    "WHERE dispatched_at IS NULL AND txid = pg_current_xact_id()"
                ),
                {"s": dispatched_hours_ago * 3600},
            )


async def _outbox_rows(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text("SELECT count(*) FROM event_outbox"))).scalar_one())


@pytest_asyncio.fixture
async def other_engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """A second reaper's own connections."""
    engine = create_engine(settings, pool_size=1)
    yield engine
    await engine.dispose()


@pytest_asyncio.fixture
async def wake_channel(redis: Redis) -> AsyncIterator[PubSub]:
    async with redis.pubsub(ignore_subscribe_messages=True) as pubsub:
        await pubsub.subscribe(WAKE_CHANNEL)
        yield pubsub


async def _next_message(pubsub: PubSub) -> bytes:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        message = await pubsub.get_message(timeout=0.5)
        if message is not None:
            return bytes(message["data"])
    raise AssertionError("no message on the wake-up channel before the deadline")


def _pruning_in_batches_of(size: int) -> Job:
    async def batch(conn: AsyncConnection, settings: Settings) -> Outcome:
        removed = await prune_delivered(conn, settings.outbox_retention_hours, batch=size)
        return Outcome(more=removed == size, changed=removed)

    return Job("test-prune", OUTBOX_PRUNE_LOCK_KEY, budget_s=0.0, batch=batch)


async def test_only_rows_delivered_before_retention_are_pruned(
    engine: AsyncEngine, redis: Redis, settings: Settings
) -> None:
    """Old delivered rows are deleted; recent delivered, pending and dead rows are kept."""
    await _events(engine, 30, dispatched_hours_ago=200)
    await _events(engine, 5, dispatched_hours_ago=1)
    await _events(engine, 4, dispatched_hours_ago=None)
    reaper = Reaper(replace(settings, outbox_retention_hours=168), engine, redis, [OUTBOX_PRUNE])
    report = await reaper.run_job(OUTBOX_PRUNE)
    assert (report.ran, report.changed, report.more) == (True, 30, False)
    async with engine.connect() as conn:
        left = (
            await conn.execute(
                text("SELECT count(*) FILTER (WHERE dispatched_at IS NULL), count(*) FROM event_outbox")
            )
        ).one()
    assert tuple(left) == (4, 9)


async def test_one_prune_batch_is_bounded(engine: AsyncEngine) -> None:
    """A single batch deletes at most its size, so a large backlog is removed in steps."""
    await _events(engine, 25, dispatched_hours_ago=500)
    async with engine.begin() as conn:
        assert await prune_delivered(conn, 168, batch=10) == 10
    assert await _outbox_rows(engine) == 15


async def test_a_job_with_work_remaining_runs_again_without_waiting_the_interval(
    engine: AsyncEngine, redis: Redis, settings: Settings
) -> None:
    """Budget spent after one batch of 10, interval an hour: 25 rows still go in three quick runs."""
    await _events(engine, 25, dispatched_hours_ago=500)
    job = _pruning_in_batches_of(10)
    stop = StopSignal()
    reaper = Reaper(replace(settings, reaper_interval_ms=HOUR_MS), engine, redis, [job])
    loop = asyncio.create_task(poll_loop("reaper", reaper.run_due, stop, error_delay=1.0))
    try:
        deadline = time.monotonic() + DEADLINE_S
        while await _outbox_rows(engine):
            assert not loop.done(), "the reaper loop ended"
            assert time.monotonic() < deadline, "the remaining rows waited for the interval"
            await asyncio.sleep(0.01)
    finally:
        stop.event.set()
        await asyncio.wait_for(loop, DEADLINE_S)
    # The run that found nothing more to do put the job off for the whole interval.
    assert reaper.due[job.name] - time.monotonic() > HOUR_MS / 1000 - DEADLINE_S


async def test_two_reapers_never_run_one_job_at_the_same_time(
    engine: AsyncEngine, other_engine: AsyncEngine, redis: Redis, settings: Settings
) -> None:
    """While one reaper runs a job the other skips it; once released, the other can take it."""
    inside, gate = [], asyncio.Event()

    async def held_batch(conn: AsyncConnection, settings: Settings) -> Outcome:
        inside.append(conn)
        await gate.wait()
        return Outcome(more=False)

    job = Job("test-held", OUTBOX_PRUNE_LOCK_KEY, budget_s=1.0, batch=held_batch)
    first, second = Reaper(settings, engine, redis, [job]), Reaper(settings, other_engine, redis, [job])
    running = asyncio.create_task(first.run_job(job))
    try:
        await eventually(lambda: len(inside) == 1, "len(inside) == 1", within=DEADLINE_S, poll=0.01)
        skipped = await asyncio.wait_for(second.run_job(job), DEADLINE_S)
        assert (skipped.ran, len(inside)) == (False, 1)
    finally:
        gate.set()
    assert (await running).ran
    assert (await second.run_job(job)).ran
    assert len(inside) == 2


async def test_a_failing_job_releases_its_lock_and_its_error_propagates(
    engine: AsyncEngine, other_engine: AsyncEngine, redis: Redis, settings: Settings
) -> None:
    async def broken(conn: AsyncConnection, settings: Settings) -> Outcome:
        await conn.execute(text("SELECT 1/0"))
        return Outcome(more=False)

    job = Job("test-broken", OUTBOX_PRUNE_LOCK_KEY, budget_s=1.0, batch=broken)
    with pytest.raises(Exception, match="division by zero"):
        await Reaper(settings, engine, redis, [job]).run_job(job)
    assert (await Reaper(settings, other_engine, redis, [OUTBOX_PRUNE]).run_job(OUTBOX_PRUNE)).ran


async def test_a_job_that_commits_events_wakes_the_dispatcher(
    engine: AsyncEngine, redis: Redis, settings: Settings, wake_channel: PubSub
) -> None:
    """The API's wake-up hint follows the reaper's commits too; a job without events sends none."""

    async def quiet(conn: AsyncConnection, settings: Settings) -> Outcome:
        return Outcome(more=False, changed=3)

    async def expiring(conn: AsyncConnection, settings: Settings) -> Outcome:
        await record_event(conn, "caracal.sessions.revoke", {"session_id": "s1", "reason": "expired"})
        return Outcome(more=False, changed=1, events=1)

    reaper = Reaper(settings, engine, redis, [])
    await reaper.run_job(Job("test-quiet", OUTBOX_PRUNE_LOCK_KEY, 1.0, quiet))
    await redis.publish(WAKE_CHANNEL, "sentinel")
    assert await _next_message(wake_channel) == b"sentinel"

    report = await reaper.run_job(Job("test-expiring", OUTBOX_PRUNE_LOCK_KEY, 1.0, expiring))
    assert report.events == 1
    assert await _next_message(wake_channel) == b"1"
    assert await _outbox_rows(engine) == 1  # committed by the time the hint is out


async def test_a_failing_job_does_not_keep_the_others_from_running(
    engine: AsyncEngine, redis: Redis, settings: Settings
) -> None:
    """The failure is logged and the job retried after the interval; the next job still runs now."""

    async def broken(conn: AsyncConnection, settings: Settings) -> Outcome:
        raise RuntimeError("job bug")

    await _events(engine, 3, dispatched_hours_ago=500)
    failing = Job("test-failing", OUTBOX_PRUNE_LOCK_KEY, budget_s=1.0, batch=broken)
    reaper = Reaper(replace(settings, reaper_interval_ms=HOUR_MS), engine, redis, [failing, OUTBOX_PRUNE])
    delay = await reaper.run_due()
    assert await _outbox_rows(engine) == 0
    assert delay > HOUR_MS / 1000 - DEADLINE_S
    assert reaper.due[failing.name] - time.monotonic() > HOUR_MS / 1000 - DEADLINE_S
