"""Fixture chain: real Postgres and Redis (one per session), a migrated database, the app, a client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
import pytest_asyncio
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from caracal.db.engine import create_engine, plain_url, transaction
from caracal.db.migrate import run_migrations
from caracal.domain.admin_tokens import seed_env_token
from caracal.settings import Settings, load_settings
from caracal_api.resources import Resources
from tests.app_pool import bound_app
from tests.log_scan import no_secret_in_any_log  # noqa: F401 - the session-end secret scan
from tests.support import ADMIN_TOKEN, Servers, empty_database, real_servers, service_env, with_database

TEST_DATABASE = "caracal_test"
# Every table the migrations made, except Alembic's own and singleton rows (a boolean primary key
# that can only be true, like outbox_origin) that the migrations seeded and the services rely on.
TRUNCATED_TABLES = """
SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
   AND c.relname <> 'alembic_version'
   AND NOT EXISTS (
       SELECT 1 FROM pg_constraint k JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = k.conkey[1]
        WHERE k.conrelid = c.oid AND k.contype = 'p' AND cardinality(k.conkey) = 1
          AND a.atttypid = 'boolean'::regtype)
 ORDER BY c.relname
"""


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    with real_servers(tmp_path_factory.mktemp("servers")) as found:
        yield found


async def recreate_database(servers: Servers, name: str) -> str:
    """An empty database on the session's server; returns its URL."""
    conn = await asyncpg.connect(plain_url(servers.postgres_url))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return with_database(servers.postgres_url, name)


@pytest.fixture(scope="session")
def logdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest_asyncio.fixture(scope="session")
async def settings(servers: Servers) -> Settings:
    database_url = await recreate_database(servers, TEST_DATABASE)
    loaded = load_settings(service_env(database_url, servers.redis_url))
    engine = create_engine(loaded, pool_size=1)
    try:
        await run_migrations(engine)
    finally:
        await engine.dispose()
    return loaded


@pytest_asyncio.fixture(scope="session")
async def shared_engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(settings, pool_size=10)
    yield engine
    await engine.dispose()


@pytest_asyncio.fixture(scope="session")
async def emptied_tables(shared_engine: AsyncEngine) -> list[str]:
    """The tables emptied before each test, read once from the catalog."""
    async with shared_engine.connect() as conn:
        return list((await conn.execute(text(TRUNCATED_TABLES))).scalars().all())


@pytest_asyncio.fixture(scope="session")
async def truncate_all(shared_engine: AsyncEngine, emptied_tables: list[str]) -> str:
    """The statements that empty the test database, its table list read once from the catalog.

    A superuser deletes with triggers and foreign keys off (session_replication_role): ~1 ms for
    every table, against ~30 ms for one TRUNCATE of them all, paid before each of ~1,500 tests."""
    tables = emptied_tables
    async with shared_engine.connect() as conn:
        superuser = (
            await conn.execute(text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user"))
        ).scalar()
    if not superuser:
        return "TRUNCATE " + ", ".join(f'"{table}"' for table in tables)
    deletes = "".join(f'DELETE FROM "{table}"; ' for table in tables)
    return f"SET session_replication_role = replica; {deletes}RESET session_replication_role"


@pytest_asyncio.fixture(scope="session")
async def shared_redis(settings: Settings) -> AsyncIterator[Redis]:
    client = Redis.from_url(str(settings.redis_url))
    yield client
    await client.aclose()


@pytest_asyncio.fixture
async def engine(shared_engine: AsyncEngine, shared_redis: Redis, truncate_all: str) -> AsyncEngine:
    """The session's database, emptied (truncation isolates tests) with Redis flushed."""
    await empty_database(shared_engine, truncate_all)
    await shared_redis.flushdb()
    return shared_engine


@pytest_asyncio.fixture
async def redis(engine: AsyncEngine, shared_redis: Redis) -> Redis:
    return shared_redis


@pytest_asyncio.fixture
async def resources(settings: Settings, engine: AsyncEngine, shared_redis: Redis) -> AsyncIterator[Resources]:
    res = Resources(settings=settings, engine=engine, redis=shared_redis)
    yield res
    await res.settled()
    await res.stop()


@pytest_asyncio.fixture
async def client(settings: Settings, resources: Resources) -> AsyncIterator[httpx.AsyncClient]:
    """The app in-process over ASGI (peer 127.0.0.1), with CARACAL_ADMIN_TOKEN seeded."""
    async with transaction(resources.engine) as conn:
        await seed_env_token(conn, ADMIN_TOKEN)
    with bound_app(resources) as app:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://caracal.test") as http:
            yield http


@pytest.fixture
def admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}
