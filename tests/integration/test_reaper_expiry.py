"""The reaper's expiry jobs against real Postgres: DCR applications a day past expiry archived,
active sessions past `expires_at` expired (by the database clock), one caracal.changes event per
row, bounded batches, nothing the second time, each row once with two reapers at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest_asyncio
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from caracal.db.engine import create_engine
from caracal.domain.expiry import SESSION_EXPIRY_BATCH, collect_expired_dcr, expire_sessions
from caracal.ids import new_id
from caracal.settings import Settings
from caracal_reaper.expiry_jobs import DCR_GC, SESSION_EXPIRY
from caracal_reaper.jobs import JOBS
from caracal_reaper.runner import Reaper
from tests.integration.api_helpers import outbox

HOUR = timedelta(hours=1)


@pytest_asyncio.fixture
async def zone(engine: AsyncEngine) -> str:
    zone_id = new_id()
    async with engine.begin() as conn:
        await conn.execute(
            text("INSERT INTO zones (id, name, slug, dek_ciphertext) VALUES (:id, 'Z', :id, '\\x00')"),
            {"id": zone_id},
        )
    return zone_id


@pytest_asyncio.fixture
async def other_engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(settings, pool_size=2)
    yield engine
    await engine.dispose()


async def _application(
    engine: AsyncEngine,
    zone: str,
    *,
    method: str = "dcr",
    expired_ago: timedelta | None,
    archived: bool = False,
) -> str:
    app_id = new_id()
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO applications (id, zone_id, name, registration_method, expires_at, archived_at)"
                " VALUES (:id, :zone, 'app', :method, now() - CAST(:ago AS interval),"
                " CASE WHEN :archived THEN now() - interval '1 day' END)"
            ),
            {"id": app_id, "zone": zone, "method": method, "ago": expired_ago, "archived": archived},
        )
    return app_id


async def _sessions(
    engine: AsyncEngine, zone: str, count: int, *, expires_in: timedelta, status: str = "active"
) -> list[str]:
    ids = [new_id() for _ in range(count)]
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO sessions (id, zone_id, session_type, status, expires_at, authenticated_at)"
                " SELECT s, :zone, 'user', :status, now() + CAST(:expires_in AS interval), now()"
                " FROM unnest(CAST(:ids AS text[])) s"
            ),
            {"zone": zone, "status": status, "expires_in": expires_in, "ids": ids},
        )
    return ids


async def _column(engine: AsyncEngine, query: str, ids: list[str]) -> list[Any]:
    async with engine.connect() as conn:
        rows = {r[0]: r[1] for r in await conn.execute(text(query), {"ids": ids})}
    return [rows[i] for i in ids]


async def _events(engine: AsyncEngine, event: str) -> list[tuple[str, str]]:
    return [(p["entity_id"], p["zone_id"]) for s, p in await outbox(engine) if p.get("event") == event]


def test_the_reaper_runs_the_expiry_jobs_under_the_originals_lock_keys() -> None:
    assert {DCR_GC, SESSION_EXPIRY} <= set(JOBS)
    assert (DCR_GC.lock_key, SESSION_EXPIRY.lock_key) == (7163920485318472, 7163920485318481)


async def test_dcr_gc_archives_only_dcr_applications_expired_more_than_a_day_ago(
    engine: AsyncEngine, redis: Redis, settings: Settings, zone: str
) -> None:
    old = await _application(engine, zone, expired_ago=25 * HOUR)
    recent = await _application(engine, zone, expired_ago=23 * HOUR)
    live = await _application(engine, zone, expired_ago=-HOUR)
    managed = await _application(engine, zone, method="managed", expired_ago=48 * HOUR)
    gone = await _application(engine, zone, expired_ago=48 * HOUR, archived=True)
    before = await _column(engine, "SELECT id, archived_at FROM applications WHERE id = ANY(:ids)", [gone])
    report = await Reaper(settings, engine, redis, [DCR_GC]).run_job(DCR_GC)
    assert (report.ran, report.changed, report.events, report.more) == (True, 1, 1, False)
    archived = await _column(
        engine,
        "SELECT id, archived_at IS NOT NULL FROM applications WHERE id = ANY(:ids)",
        [old, recent, live, managed],
    )
    assert archived == [True, False, False, False]
    assert (
        await _column(engine, "SELECT id, archived_at FROM applications WHERE id = ANY(:ids)", [gone])
        == before
    )
    assert await _events(engine, "application.expired") == [(old, zone)]
    again = await Reaper(settings, engine, redis, [DCR_GC]).run_job(DCR_GC)
    assert (again.changed, again.events) == (0, 0)
    assert len(await _events(engine, "application.expired")) == 1


async def test_dcr_gc_takes_the_oldest_expiry_first_in_bounded_batches(
    engine: AsyncEngine, zone: str
) -> None:
    apps = [await _application(engine, zone, expired_ago=(30 + n) * HOUR) for n in range(3)]  # newest first
    async with engine.begin() as conn:
        assert await collect_expired_dcr(conn, batch=2) == 2
    archived = await _column(
        engine, "SELECT id, archived_at IS NOT NULL FROM applications WHERE id = ANY(:ids)", apps
    )
    assert archived == [False, True, True]


async def test_session_reaper_expires_active_sessions_past_expiry_by_the_database_clock(
    engine: AsyncEngine, redis: Redis, settings: Settings, zone: str
) -> None:
    past = await _sessions(engine, zone, 3, expires_in=-timedelta(seconds=1))
    future = await _sessions(engine, zone, 2, expires_in=HOUR)
    revoked = await _sessions(engine, zone, 1, expires_in=-HOUR, status="revoked")
    report = await Reaper(settings, engine, redis, [SESSION_EXPIRY]).run_job(SESSION_EXPIRY)
    assert (report.changed, report.events, report.more) == (3, 3, False)
    statuses = await _column(
        engine, "SELECT id, status FROM sessions WHERE id = ANY(:ids)", past + future + revoked
    )
    assert statuses == ["expired"] * 3 + ["active"] * 2 + ["revoked"]
    assert sorted(await _events(engine, "session.expired")) == sorted((s, zone) for s in past)
    again = await Reaper(settings, engine, redis, [SESSION_EXPIRY]).run_job(SESSION_EXPIRY)
    assert (again.changed, again.events) == (0, 0)


async def test_session_reaper_works_in_batches_until_none_remain(
    engine: AsyncEngine, redis: Redis, settings: Settings, zone: str
) -> None:
    """1,200 expired sessions: one batch takes 500; one run takes every batch within its budget."""
    await _sessions(engine, zone, 1200, expires_in=-HOUR)
    async with engine.begin() as conn:
        assert await expire_sessions(conn) == SESSION_EXPIRY_BATCH
    report = await Reaper(settings, engine, redis, [SESSION_EXPIRY]).run_job(SESSION_EXPIRY)
    assert (report.batches, report.changed, report.more) == (2, 700, False)
    assert len(await _events(engine, "session.expired")) == 1200


async def test_a_stopping_reaper_finishes_its_batch_and_claims_no_more(
    engine: AsyncEngine, redis: Redis, settings: Settings, zone: str
) -> None:
    """SIGTERM between batches: the batch in flight commits with its events, the rest waits."""
    await _sessions(engine, zone, 600, expires_in=-HOUR)
    reaper = Reaper(settings, engine, redis, [SESSION_EXPIRY], stopping=lambda: True)
    report = await reaper.run_job(SESSION_EXPIRY)
    assert (report.batches, report.changed, report.more) == (1, 500, True)
    assert len(await _events(engine, "session.expired")) == 500


async def test_two_reapers_at_once_expire_each_session_once(
    engine: AsyncEngine, other_engine: AsyncEngine, redis: Redis, settings: Settings, zone: str
) -> None:
    """Both reapers run their jobs at once, repeatedly: every row changed once, one event each."""
    ids = await _sessions(engine, zone, 1500, expires_in=-HOUR)
    apps = [await _application(engine, zone, expired_ago=48 * HOUR) for _ in range(5)]
    reapers = [Reaper(settings, e, redis, [SESSION_EXPIRY, DCR_GC]) for e in (engine, other_engine)]
    reports = []
    for _ in range(3):
        for job in (SESSION_EXPIRY, DCR_GC):
            reports += await asyncio.gather(*(reaper.run_job(job) for reaper in reapers))
    assert sum(r.changed for r in reports if r.name == SESSION_EXPIRY.name) == 1500
    assert sum(r.changed for r in reports if r.name == DCR_GC.name) == 5
    expired = await _events(engine, "session.expired")
    assert sorted(s for s, _ in expired) == sorted(ids)
    assert sorted(a for a, _ in await _events(engine, "application.expired")) == sorted(apps)


async def test_two_expiry_batches_in_flight_take_disjoint_sessions(
    engine: AsyncEngine, other_engine: AsyncEngine, zone: str
) -> None:
    """Without the lease too (two transactions at once), rows one batch holds are skipped by the other."""
    ids = await _sessions(engine, zone, 400, expires_in=-HOUR)
    async with engine.connect() as first, other_engine.connect() as second:
        first_tx, second_tx = await first.begin(), await second.begin()
        taken_first = await expire_sessions(first, batch=300)
        taken_second = await expire_sessions(second, batch=300)
        await first_tx.commit()
        await second_tx.commit()
    assert (taken_first, taken_second) == (300, 100)
    assert sorted(s for s, _ in await _events(engine, "session.expired")) == sorted(ids)
