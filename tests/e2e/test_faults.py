"""Faults under a bounded load, each with its invariant: Postgres restarted, Redis paused, killed and
out of disk, a transaction left idle with a row lock, the reaper's clock skewed. After each fault,
every acknowledged write is in Postgres and every event reached its stream once, in commit order."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path

import asyncpg
import httpx
import pytest
import pytest_asyncio
from bench.traffic import MIX, WRITES_ONLY, Call, Traffic, undelivered
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from caracal.db.engine import create_engine, plain_url
from caracal.ids import new_id
from caracal.settings import load_settings
from tests.e2e.fault_rig import (
    IDLE_TX_TIMEOUT_MS,
    Rig,
    all_delivered_once_in_order,
    answered_ok,
    fault_servers,
    full_disk,
    load,
    redis_refuses_writes,
    unexpected,
)
from tests.support import ADMIN_TOKEN, SERVICE_LOGS, eventually

pytestmark = pytest.mark.e2e
READS_AND_WRITES = {"get": 2, "post": 3, "patch": 1}
# what "latency stays bounded" means while a dependency is away: well below the 5 s a connect attempt
# or a hung Redis call would take, with room for a CI machine shared by other work
SLOWEST_ANSWER_S = 3.0


@pytest_asyncio.fixture(scope="module")
async def rig(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Rig]:
    with fault_servers(tmp_path_factory.mktemp("faults")) as servers:
        await asyncio.to_thread(servers.start_processes)
        try:
            yield servers
        finally:
            await asyncio.to_thread(servers.stop_processes)


def writes_after(traffic: Traffic, moment: float, count: int) -> Callable[[], bool]:
    """A condition for `eventually`: `count` POSTs sent after `moment` answered 201."""
    return lambda: answered_ok(traffic.since(moment), "post", count)


def slowest(calls: list[Call]) -> float:
    return max((c.ended - c.began for c in calls if c.ended), default=0.0)


async def test_idle_transaction_is_ended_by_its_timeout_and_bounds_everyone_elses_latency(rig: Rig) -> None:
    """A transaction of ours left idle holding a zone's row lock: other requests answer fast, the
    PATCH of that zone and the delivery of newer events wait only until
    idle_in_transaction_session_timeout ends the holder."""
    async with _admin(rig) as api:
        zone = await _new_zone(api, "locked")
        engine = create_engine(load_settings(rig.env), pool_size=1)  # our connections' settings
        try:
            conn = await engine.connect()
            await conn.begin()
            await conn.execute(text("SELECT id FROM zones WHERE id = :z FOR UPDATE"), {"z": zone})
            holder = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
            held = time.monotonic()
            async with load(rig, READS_AND_WRITES) as traffic:
                # commits after the holder began wait for it too: delivery follows transaction order
                await eventually(lambda: _events_wait(rig), "events held back by the idle transaction")
                patch = await api.patch(f"/v1/zones/{zone}", json={"name": "unlocked"}, timeout=30)
                waited = time.monotonic() - held
                during = traffic.since(held)
            with pytest.raises(DBAPIError, match="connection is closed"):  # Postgres ended it
                await conn.execute(text("SELECT 1"))
            await conn.invalidate()
        finally:
            await engine.dispose()
    assert patch.status_code == 200, patch.text
    timeout_s = IDLE_TX_TIMEOUT_MS / 1000
    assert timeout_s * 0.9 <= waited <= timeout_s + 3, f"the PATCH waited {waited:.2f} s"
    assert answered_ok(during, "post", 10), rig.tails()
    # the others never waited for the lock: each answered well within the time the holder lived
    assert slowest([c for c in during if c.ended < held + timeout_s]) < 0.75 * timeout_s
    assert not unexpected(rig.calls)
    log = (rig.postgres.directory / "postgres.log").read_text(errors="replace")
    assert "terminating connection due to idle-in-transaction timeout" in log
    assert await _backend_gone(rig, holder)
    await all_delivered_once_in_order(rig)


def _admin(rig: Rig) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=rig.api_url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})


async def _new_zone(api: httpx.AsyncClient, name: str) -> str:
    created = await api.post("/v1/zones", json={"name": name})
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


async def _backend_gone(rig: Rig, pid: int) -> bool:
    conn = await asyncpg.connect(plain_url(rig.postgres.url))
    try:
        return not await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid)
    finally:
        await conn.close()


async def _events_wait(rig: Rig) -> bool:
    return await undelivered(rig.postgres.url) > 0


async def test_paused_redis_keeps_writes_answering_and_events_wait_then_arrive(rig: Rig) -> None:
    """Redis SIGSTOPped: writes still answer 2xx within the bound (rate limits fail open), their
    events wait in the outbox; after SIGCONT all arrive, once, in order."""
    assert rig.redis.process is not None
    async with load(rig, READS_AND_WRITES) as traffic:
        await eventually(lambda: answered_ok(traffic.calls, "post", 5), "writes before the pause")
        rig.redis.process.send_signal(signal.SIGSTOP)
        paused = time.monotonic()
        try:
            await eventually(writes_after(traffic, paused, 20), "writes while paused", 20)
            await eventually(lambda: _events_wait(rig), "events waiting in the outbox")
        finally:
            rig.redis.process.send_signal(signal.SIGCONT)
        during = traffic.since(paused)
    assert slowest(during) < SLOWEST_ANSWER_S, sorted(c.ms for c in during)[-5:]
    assert not unexpected(rig.calls)
    await all_delivered_once_in_order(rig)


async def test_killed_redis_keeps_writes_answering_and_nothing_is_lost_after_restart(rig: Rig) -> None:
    """Redis SIGKILLed: writes answer 2xx; once it is started again (AOF restores the streams and
    their high-water marks) the dispatcher delivers what waited, nothing twice."""
    async with load(rig, READS_AND_WRITES) as traffic:
        await eventually(lambda: answered_ok(traffic.calls, "post", 5), "writes before the kill")
        await asyncio.to_thread(rig.redis.stop, signal.SIGKILL)
        killed = time.monotonic()
        await eventually(writes_after(traffic, killed, 20), "writes while Redis is dead", 20)
        await eventually(lambda: _events_wait(rig), "events waiting in the outbox")
        await asyncio.to_thread(rig.redis.start)
        during = traffic.since(killed)
    assert slowest(during) < SLOWEST_ANSWER_S
    assert not unexpected(rig.calls)
    await all_delivered_once_in_order(rig)


async def test_redis_out_of_disk_keeps_writes_committing_and_events_wait_until_space_returns(
    rig: Rig,
) -> None:
    """Redis' disk full (its AOF write fails, so it refuses writes): API writes still commit, events
    wait in the outbox; when space returns they all arrive, once, in order."""
    async with load(rig, WRITES_ONLY) as traffic:
        await eventually(lambda: answered_ok(traffic.calls, "post", 5), "writes before the disk fills")
        async with full_disk(rig) as how:
            await eventually(lambda: redis_refuses_writes(rig), f"Redis refusing writes ({how})", 15)
            full = time.monotonic()
            await eventually(writes_after(traffic, full, 20), "writes on a full disk", 20)
            await eventually(lambda: _events_wait(rig), "events waiting in the outbox")
            assert await redis_refuses_writes(rig), "Redis recovered while its disk was still full"
    assert not unexpected(rig.calls)
    await all_delivered_once_in_order(rig)


POSTGRES_DOWN = frozenset({(503, "postgres_unreachable")})


async def test_postgres_restart_is_503_meanwhile_and_the_api_recovers_without_restart(rig: Rig) -> None:
    """Postgres stopped: every answer is 503 postgres_unreachable, fast; started again: 2xx from the
    same API process, and every acknowledged write is there with its event."""
    async with load(rig, MIX) as traffic:
        await eventually(lambda: answered_ok(traffic.calls, "post", 5), "writes before the outage")
        await asyncio.to_thread(rig.postgres.stop)
        down = time.monotonic()

        def refused() -> bool:
            return sum(c.status == 503 for c in traffic.since(down)) >= 20

        await eventually(refused, "503s during the outage", 20)
        restarting = time.monotonic()
        await asyncio.to_thread(rig.postgres.start)
        back = time.monotonic()
        outage = traffic.since(down)
        await eventually(writes_after(traffic, back, 10), "writes after the restart", 30)
    in_outage = [c for c in outage if c.ended and c.ended < restarting]
    assert in_outage and all(c.status == 503 for c in in_outage), unexpected(in_outage)
    assert slowest(in_outage) < SLOWEST_ANSWER_S
    assert not unexpected(rig.calls, POSTGRES_DOWN)
    assert rig.api is not None and rig.api.process.poll() is None
    await all_delivered_once_in_order(rig)


# --- the reaper's clock ----------------------------------------------------------------------------

SESSION = (
    "INSERT INTO sessions (id, zone_id, session_type, status, expires_at, authenticated_at)"
    " VALUES ($1, $2, 'user', 'active', now() + make_interval(mins => $3), now())"
)
DCR_APP = (
    "INSERT INTO applications (id, zone_id, name, registration_method, expires_at)"
    " VALUES ($1, $2, 'dcr', 'dcr', now() - interval '23 hours')"
)
OLD_DELIVERED = (
    "INSERT INTO event_outbox (id, stream_name, payload_json, dispatched_at)"
    " VALUES ($1, 'caracal.e2e.skew', '{}', now() - interval '167 hours')"
)


def _skewed_reaper(rig: Rig, skew: str) -> subprocess.Popen[bytes]:
    """`caracal reaper` under libfaketime: its host clock `skew` (e.g. +2d) from the real one."""
    faketime = shutil.which("faketime")
    assert faketime, "faketime (Debian package) is missing: `make system-packages` installs it"
    log_path = rig.logdir / f"reaper{skew}.log"
    SERVICE_LOGS.append(log_path)
    env = {**rig.env, "CARACAL_REAPER_INTERVAL_MS": "600000", "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
    with log_path.open("wb") as out:
        command = [faketime, "-f", skew, sys.executable, "-m", "caracal_reaper"]
        # its own process group: faketime runs the reaper as its child, and stopping must reach both
        return subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


async def test_skewed_reaper_clock_changes_nothing_expiry_follows_the_database_clock(rig: Rig) -> None:
    """A reaper whose host is two days ahead expires only what the database clock says is due
    (nothing an hour from expiry, no DCR app 23 h past expiry, no event inside retention); one two
    days behind still expires a session a minute past `expires_at`."""
    async with _admin(rig) as api:
        zone = await _new_zone(api, "skewed-reaper")  # its own: the test runs alone too
    conn = await asyncpg.connect(plain_url(rig.postgres.url))
    try:
        live, due, due_later, app, event = (new_id() for _ in range(5))
        await conn.execute(SESSION, live, zone, 60)
        await conn.execute(SESSION, due, zone, -1)
        await conn.execute(DCR_APP, app, zone)
        await conn.execute(OLD_DELIVERED, event)
        await _run_reaper_until(rig, conn, "+2d", due)
        assert await conn.fetchval("SELECT status FROM sessions WHERE id = $1", live) == "active"
        assert await conn.fetchval("SELECT archived_at FROM applications WHERE id = $1", app) is None
        assert await conn.fetchval("SELECT count(*) FROM event_outbox WHERE id = $1", event) == 1
        await conn.execute(SESSION, due_later, zone, -1)
        await _run_reaper_until(rig, conn, "-2d", due_later)
        assert await conn.fetchval("SELECT status FROM sessions WHERE id = $1", live) == "active"
    finally:
        await conn.close()
    await all_delivered_once_in_order(rig)


async def _run_reaper_until(rig: Rig, conn: asyncpg.Connection, skew: str, session: str) -> None:
    """Run a skewed reaper until `session` is expired (its first pass ran every job before that)."""
    reaper = _skewed_reaper(rig, skew)
    try:

        async def expired() -> bool:
            assert reaper.poll() is None, f"the reaper exited with {reaper.returncode}"
            return await conn.fetchval("SELECT status FROM sessions WHERE id = $1", session) == "expired"

        await eventually(expired, f"the reaper ({skew}) expiring a due session", 30, poll=0.05)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(reaper.pid, signal.SIGTERM)
        await asyncio.to_thread(reaper.wait, 15)
        database_url = rig.env["DATABASE_URL"]
        await eventually(lambda: not _reaper_left(database_url), "no reaper outlives faketime", 15, poll=0.05)
    first_line = (rig.logdir / f"reaper{skew}.log").read_text().splitlines()[0]
    shifted_by = _log_time(first_line) - time.time()
    assert abs(abs(shifted_by) - 2 * 86400) < 600, f"faketime did not shift the reaper: {first_line}"


def _reaper_left(database_url: str) -> bool:
    """Whether a `caracal_reaper` process on this database is left (faketime's child included)."""
    return any(_is_reaper_of(entry, database_url) for entry in Path("/proc").iterdir())


def _is_reaper_of(entry: Path, database_url: str) -> bool:
    try:
        if b"caracal_reaper" not in (entry / "cmdline").read_bytes():
            return False
        return f"DATABASE_URL={database_url}".encode() in (entry / "environ").read_bytes().split(b"\0")
    except OSError:
        return False


def _log_time(line: str) -> float:
    return datetime.fromisoformat(json.loads(line)["time"].replace("Z", "+00:00")).timestamp()
