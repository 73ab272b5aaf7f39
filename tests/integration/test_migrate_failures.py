"""Migrations and the workers' schema wait when the database fails: the first error is the one told."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio
from sqlalchemy.exc import DBAPIError

from caracal.db.engine import create_engine, plain_url
from caracal.db.migrate import DatabaseRefused, run_migrations, wait_for_schema
from caracal.embedded import EmbeddedPostgres, free_port
from caracal.settings import load_settings
from tests.support import service_env, start_service

ROLE, PASSWORD = "carol", "right-password"


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[EmbeddedPostgres]:
    """A Postgres of this test alone (it may be stopped), where `carol` must give her password."""
    postgres = EmbeddedPostgres(tmp_path / "pg", durable=False)
    postgres.start()
    hba = postgres.data / "pg_hba.conf"
    hba.write_text(
        f"host all {ROLE} 127.0.0.1/32 scram-sha-256\nhost all all 127.0.0.1/32 trust\nlocal all all trust\n"
    )
    try:
        yield postgres
    finally:
        postgres.destroy()


@pytest_asyncio.fixture
async def with_carol(own_postgres: EmbeddedPostgres) -> AsyncIterator[EmbeddedPostgres]:
    conn = await asyncpg.connect(plain_url(own_postgres.url))
    try:
        await conn.execute(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{PASSWORD}'")
        await conn.execute("SELECT pg_reload_conf()")
    finally:
        await conn.close()
    yield own_postgres


def url_as(postgres: EmbeddedPostgres, password: str, database: str = "caracal") -> str:
    return f"postgresql://{ROLE}:{password}@127.0.0.1:{postgres.port}/{database}"


def counting_stop(limit: int) -> Callable[[], bool]:
    """A `stopped` callable that answers True after `limit` calls (bounds a wait that should end)."""
    calls = iter(range(limit))
    return lambda: next(calls, None) is None


async def test_migration_on_a_dying_server_raises_its_own_error_and_logs_the_failed_cleanup(
    own_postgres: EmbeddedPostgres, caplog: pytest.LogCaptureFixture
) -> None:
    """Postgres stops mid-migration: the migration's error propagates, the failed unlock is a warning."""
    blocker = await asyncpg.connect(plain_url(own_postgres.url))
    await blocker.execute("CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY)")
    lock = blocker.transaction()
    await lock.start()
    await blocker.execute("LOCK TABLE alembic_version IN ACCESS EXCLUSIVE MODE")
    engine = create_engine(load_settings(service_env(own_postgres.url, "redis://127.0.0.1:1/0")), pool_size=1)
    try:
        migrating = asyncio.create_task(run_migrations(engine))
        await _until_waiting_on_a_lock(own_postgres.url)
        with caplog.at_level(logging.WARNING, logger="caracal.migrate"):
            await asyncio.to_thread(own_postgres.stop)
            with pytest.raises(DBAPIError) as raised:
                await asyncio.wait_for(migrating, timeout=30)
    finally:
        await engine.dispose()
    assert "alembic_version" in str(raised.value), str(raised.value)
    assert "pg_advisory_unlock" not in str(raised.value)
    [cleanup] = [r for r in caplog.records if r.name == "caracal.migrate" and r.levelno == logging.WARNING]
    assert "unlock" in cleanup.getMessage()
    assert cleanup.exc_info is not None and "pg_advisory_unlock" in str(cleanup.exc_info[1])


async def _until_waiting_on_a_lock(url: str) -> None:
    watcher = await asyncpg.connect(plain_url(url))
    deadline = time.monotonic() + 20
    try:
        while time.monotonic() < deadline:
            if await watcher.fetchval("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"):
                return
            await asyncio.sleep(0.02)
    finally:
        await watcher.close()
    raise AssertionError("the migration never waited on the table lock")


@pytest.mark.parametrize(
    ("password", "database", "reason"),
    [
        ("wrong-password", "caracal", "password authentication failed"),
        (PASSWORD, "no_such_database", "does not exist"),
    ],
)
async def test_schema_wait_gives_up_at_once_when_the_database_refuses_the_credentials(
    with_carol: EmbeddedPostgres, caplog: pytest.LogCaptureFixture, password: str, database: str, reason: str
) -> None:
    """A wrong password or a missing database cannot heal by waiting: DatabaseRefused, exit code 3."""
    settings = load_settings(service_env(url_as(with_carol, password, database), "redis://127.0.0.1:1/0"))
    engine = create_engine(settings, pool_size=1)
    try:
        with caplog.at_level(logging.INFO, "caracal.migrate"), pytest.raises(DatabaseRefused) as raised:
            await wait_for_schema(engine, counting_stop(500), poll=0.01)  # returns False after 5 s
    finally:
        await engine.dispose()
    assert raised.value.code == 3
    [line] = [r for r in caplog.records if r.levelno == logging.CRITICAL]
    assert reason in line.getMessage() and "DATABASE_URL" in line.getMessage()
    assert password not in line.getMessage()


async def test_schema_wait_logs_each_distinct_cause_once_at_warning(caplog: pytest.LogCaptureFixture) -> None:
    """Postgres not listening: one warning naming the cause, however many times the check is retried."""
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/caracal"
    engine = create_engine(load_settings(service_env(url, "redis://127.0.0.1:1/0")), pool_size=1)
    try:
        with caplog.at_level(logging.DEBUG, logger="caracal.migrate"):
            assert await wait_for_schema(engine, counting_stop(5), poll=0.01) is False
    finally:
        await engine.dispose()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "connect" in warnings[0].lower(), warnings


@pytest.mark.parametrize("kind", ["dispatcher", "reaper"])
async def test_worker_with_a_wrong_database_password_exits_non_zero_with_one_clear_line(
    with_carol: EmbeddedPostgres, tmp_path: Path, kind: str
) -> None:
    """The worker does not wait forever: it exits 3 and its log says the database refused it, and why."""
    env = service_env(url_as(with_carol, "wrong-password"), "redis://127.0.0.1:1/0")
    worker = start_service(kind, env, tmp_path)
    try:
        code = await asyncio.to_thread(worker.process.wait, 30)
    finally:
        worker.stop()
    log = worker.log()
    assert code == 3, log[-3000:]
    refused = [line for line in log.splitlines() if "refused the connection" in line]
    assert len(refused) == 1, log[-3000:]
    assert "password authentication failed" in refused[0]
    assert "wrong-password" not in log
