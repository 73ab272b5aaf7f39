"""`caracal status`: the facts it reads from a real Postgres and Redis, its screen, its exit codes."""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from caracal.cli import main
from caracal.db.engine import plain_url, transaction
from caracal.db.locks import AUDIT_SEAL_LOCK_KEY, STREAM_LEASE_PREFIX
from caracal.db.migrate import head_revision, revisions_behind
from caracal.events import CHANGES, CONTRACT_STREAMS, SESSIONS_REVOKE
from caracal.outbox import record_event
from caracal.reaper_stats import REAPER_STATS_KEY, record_success
from caracal.settings import Settings
from tests.integration.api_helpers import make_zone
from tests.support import service_env

pytestmark = pytest.mark.asyncio


@pytest.fixture
def status_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    assert settings.database_url and settings.redis_url
    for name, value in service_env(settings.database_url, settings.redis_url).items():
        monkeypatch.setenv(name, value)


async def run_status(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """The command in a thread (it runs its own event loop), as `caracal status` would from a shell."""
    capsys.readouterr()
    code = await asyncio.to_thread(main, ["status", *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest_asyncio.fixture
async def dispatcher_session(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    """A session like the dispatcher's lease connection (caracal_dispatcher.leases), holding one lease."""
    assert settings.database_url
    conn = await asyncpg.connect(
        plain_url(settings.database_url), server_settings={"application_name": "caracal-dispatcher"}
    )
    lease = await conn.fetchval(
        f"SELECT pg_try_advisory_lock(hashtextextended('{STREAM_LEASE_PREFIX}' || $1, 0))", SESSIONS_REVOKE
    )
    assert lease
    yield conn
    await conn.close()


async def _revoke_events(engine: AsyncEngine) -> None:
    """Three events on the revoke stream: one dispatched, one dead, one pending."""
    async with transaction(engine) as conn:
        ids = [await record_event(conn, SESSIONS_REVOKE, {"session_id": f"s{i}"}) for i in range(3)]
        await conn.execute(
            text("UPDATE event_outbox SET dispatched_at = now() WHERE id = :id"), {"id": ids[0]}
        )
        await conn.execute(text("UPDATE event_outbox SET dead_at = now() WHERE id = :id"), {"id": ids[1]})


async def _degraded_system(
    engine: AsyncEngine, client: httpx.AsyncClient, admin: dict[str, str], dispatcher: asyncpg.Connection
) -> None:
    await make_zone(client, admin)  # an admin audit row not sealed yet, and a pending caracal.changes event
    await _revoke_events(engine)
    assert await dispatcher.fetchval("SELECT pg_try_advisory_lock($1)", AUDIT_SEAL_LOCK_KEY)


def _stream(facts: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(s for s in facts["streams"] if s["stream"] == name)
    return found


@pytest.mark.usefixtures("status_env")
async def test_status_json_reports_backlog_dead_letters_lease_holders_and_unsealed_audit(
    engine: AsyncEngine,
    client: httpx.AsyncClient,
    admin: dict[str, str],
    dispatcher_session: asyncpg.Connection,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await _degraded_system(engine, client, admin, dispatcher_session)
    code, out, _ = await run_status(capsys, "--json")
    facts = json.loads(out)
    assert code == 1
    assert facts["verdict"] == "degraded"
    assert facts["version"] == importlib.metadata.version("caracal")
    assert facts["migration"] == {
        "current": head_revision(),
        "head": head_revision(),
        "state": "up to date",
        "pending": [],
    }
    revoke = _stream(facts, SESSIONS_REVOKE)
    assert (revoke["pending"], revoke["dead"]) == (1, 1)
    assert revoke["lease"]["application_name"] == "caracal-dispatcher"
    assert revoke["lease"]["pid"] == dispatcher_session.get_server_pid()
    assert revoke["length"] == 0  # nothing published to Redis in this test
    changes = _stream(facts, CHANGES)
    assert changes["pending"] >= 1
    assert changes["lease"] is None
    assert {s["stream"] for s in facts["streams"]} >= set(CONTRACT_STREAMS)
    assert facts["reaper"]["running_now"]["audit-seal"]["pid"] == dispatcher_session.get_server_pid()
    assert facts["reaper"]["audit_unsealed"] >= 1
    assert facts["reaper"]["audit_newest_sealed_at"] is None
    assert f"{SESSIONS_REVOKE}: 1 dead letter(s)" in facts["reasons"]
    assert any(
        r.startswith(f"{CHANGES}: ") and "no dispatcher holds its lease" in r for r in facts["reasons"]
    )
    assert not any(r.startswith(f"{SESSIONS_REVOKE}: 1 pending") for r in facts["reasons"])


@pytest.mark.usefixtures("status_env")
async def test_status_screen_names_the_verdict_reasons_and_the_lease_holder(
    engine: AsyncEngine,
    client: httpx.AsyncClient,
    admin: dict[str, str],
    dispatcher_session: asyncpg.Connection,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await _degraded_system(engine, client, admin, dispatcher_session)
    code, out, _ = await run_status(capsys)
    assert code == 1
    assert "Caracal status: degraded" in out
    assert f"schema     up to date ({head_revision()})" in out
    assert f"caracal-dispatcher pid {dispatcher_session.get_server_pid()}" in out
    assert f"  - {SESSIONS_REVOKE}: 1 dead letter(s)" in out
    assert "job locks held:   audit-seal (caracal-dispatcher pid" in out
    assert "verdict: degraded" in out


@pytest.mark.usefixtures("status_env")
async def test_status_of_a_quiet_system_is_healthy_and_exits_0(
    engine: AsyncEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = await run_status(capsys)
    assert (code, err) == (0, "")
    assert "Caracal status: healthy" in out
    assert "redis      ok" in out
    assert all(stream in out for stream in CONTRACT_STREAMS)
    assert out.rstrip().endswith("verdict: healthy")


@pytest.mark.usefixtures("status_env")
async def test_status_counts_the_migrations_a_database_is_behind(
    engine: AsyncEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    behind = revisions_behind("0001")
    assert behind
    async with transaction(engine) as conn:
        await conn.execute(text("UPDATE alembic_version SET version_num = '0001'"))
    try:
        code, out, _ = await run_status(capsys, "--json")
    finally:
        async with transaction(engine) as conn:
            await conn.execute(
                text("UPDATE alembic_version SET version_num = :head"), {"head": head_revision()}
            )
    facts = json.loads(out)
    assert code == 1
    assert facts["migration"]["state"] == f"behind: {len(behind)}"
    assert facts["reasons"] == [f"schema behind: {len(behind)} (database at 0001)"]


async def test_status_of_an_unreachable_database_exits_2_with_one_line_and_no_password(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert settings.redis_url
    unreachable = "postgresql://caracal:hunter2@127.0.0.1:1/caracal"
    for name, value in service_env(unreachable, settings.redis_url).items():
        monkeypatch.setenv(name, value)
    code, out, err = await run_status(capsys, "--json")
    assert (code, out) == (2, "")
    assert err.startswith("caracal status: cannot read the database at 127.0.0.1:1/caracal")
    assert len(err.strip().splitlines()) == 1
    assert "hunter2" not in err


@pytest.mark.usefixtures("status_env")
async def test_status_reports_the_reapers_last_runs_and_names_a_stalled_job(
    engine: AsyncEngine, redis: Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    await record_success(redis, "dcr-gc", rows=2, events=2)
    await record_success(redis, "audit-seal", rows=5, events=0)
    await redis.hset(REAPER_STATS_KEY, "audit-seal.last_success", f"{time.time() - 600:.3f}")
    code, out, _ = await run_status(capsys, "--json")
    runs = json.loads(out)["reaper"]["last_runs"]
    assert code == 1
    assert runs["dcr-gc"]["runs"] == 1
    assert runs["dcr-gc"]["age_s"] < 60
    assert runs["outbox-prune"]["last_success"] is None
    assert 600 <= runs["audit-seal"]["age_s"] < 700
    (reason,) = json.loads(out)["reasons"]
    assert reason.startswith("reaper job audit-seal stalled: last success 6")
    code, out, _ = await run_status(capsys)
    assert "last success:     dcr-gc" in out
    assert "outbox-prune    never reported" in out
