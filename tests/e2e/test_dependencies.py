"""A dead dependency gets a 503 with its name, and the API recovers by itself when it returns."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from redis.asyncio import Redis
from sqlalchemy import text

from caracal.db.engine import create_engine, transaction
from caracal.db.migrate import run_migrations
from caracal.domain.admin_tokens import seed_env_token
from caracal.embedded import EmbeddedPostgres, EmbeddedRedis
from caracal.events import CHANGES
from caracal.settings import Settings, load_settings
from caracal_api.app import build_resources, create_app
from tests.support import ADMIN_TOKEN, service_env, start_service

pytestmark = pytest.mark.e2e
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@dataclass
class Outage:
    postgres: EmbeddedPostgres
    redis: EmbeddedRedis
    client: httpx.AsyncClient


@pytest_asyncio.fixture
async def outage(tmp_path: Path) -> AsyncIterator[Outage]:
    """An API over its own Postgres and Redis, which the test may stop and start."""
    postgres = EmbeddedPostgres(tmp_path / "pg", durable=False)
    redis = EmbeddedRedis(tmp_path / "redis")
    settings = load_settings(
        service_env(postgres.start(), redis.start(), CARACAL_DB_STATEMENT_TIMEOUT_MS="3000")
    )
    resources = build_resources(settings)
    await run_migrations(resources.engine)
    async with transaction(resources.engine) as conn:
        await seed_env_token(conn, ADMIN_TOKEN)
    transport = httpx.ASGITransport(app=create_app(settings, resources))
    try:
        async with httpx.AsyncClient(
            transport=transport, base_url="http://caracal.test", timeout=30
        ) as client:
            yield Outage(postgres, redis, client)
    finally:
        await resources.stop()
        await resources.redis.aclose()
        await resources.engine.dispose()
        redis.destroy()
        postgres.destroy()


async def test_postgres_down_is_503_and_service_resumes_when_it_returns(outage: Outage) -> None:
    """With Postgres stopped: 503 postgres_unreachable on /v1 and /ready; after restart: 200 again."""
    assert (await outage.client.post("/v1/zones", json={"name": "before"}, headers=AUTH)).status_code == 201
    outage.postgres.stop()
    down = await outage.client.get("/v1/zones", headers=AUTH)
    assert down.status_code == 503
    assert down.json()["error"] == "postgres_unreachable"
    ready = await outage.client.get("/ready")
    assert (ready.status_code, ready.json()["error"]) == (503, "postgres_unreachable")
    outage.postgres.start()
    back = await outage.client.get("/v1/zones", headers=AUTH)
    assert back.status_code == 200
    assert [z["name"] for z in back.json()] == ["before"]
    assert (await outage.client.get("/ready")).status_code == 200


async def test_redis_down_makes_ready_503_while_writes_still_commit(outage: Outage, tmp_path: Path) -> None:
    """Without Redis: /ready says redis_unreachable, writes commit and their events wait in the outbox;
    once Redis is back, the running dispatcher delivers them."""
    settings = load_settings(service_env(outage.postgres.url, outage.redis.url))
    dispatcher = start_service("dispatcher", service_env(outage.postgres.url, outage.redis.url), tmp_path)
    try:
        outage.redis.stop()
        ready = await outage.client.get("/ready")
        assert (ready.status_code, ready.json()["error"]) == (503, "redis_unreachable")
        created = await outage.client.post("/v1/zones", json={"name": "during"}, headers=AUTH)
        assert created.status_code == 201
        zone_id = created.json()["id"]
        assert await _undelivered_events_of(settings, zone_id) == 1  # kept, not lost
        outage.redis.start()
        assert (await outage.client.get("/ready")).status_code == 200
        entry = await _stream_entry_of(outage.redis.url, zone_id, deadline=time.monotonic() + 30)
        assert entry["event"] == "zone.created"
        assert await _undelivered_events_of(settings, zone_id) == 0
    finally:
        dispatcher.stop()


async def _undelivered_events_of(settings: Settings, zone_id: str) -> int:
    engine = create_engine(settings, pool_size=1)
    try:
        async with engine.connect() as conn:
            query = text(
                "SELECT count(*) FROM event_outbox"
                " WHERE payload_json->>'entity_id' = :z AND dispatched_at IS NULL"
            )
            return int((await conn.execute(query, {"z": zone_id})).scalar_one())
    finally:
        await engine.dispose()


async def _stream_entry_of(redis_url: str, zone_id: str, deadline: float) -> dict[str, str]:
    redis = Redis.from_url(redis_url, decode_responses=True)
    try:
        while time.monotonic() < deadline:
            for _id, fields in await redis.xrange(CHANGES):
                if fields.get("entity_id") == zone_id:
                    return dict(fields)
            await asyncio.sleep(0.1)
    finally:
        await redis.aclose()
    raise AssertionError(f"the event of zone {zone_id} never reached {CHANGES}")


async def test_failed_commit_is_a_5xx_and_leaves_neither_state_nor_event(outage: Outage) -> None:
    """A commit that fails (a deferred check firing at COMMIT) answers 500; no zone, no outbox row."""
    engine = create_engine(load_settings(service_env(outage.postgres.url, outage.redis.url)), pool_size=1)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(FAIL_AT_COMMIT_FUNCTION))
            await conn.execute(text(FAIL_AT_COMMIT_TRIGGER))
            before = (await conn.execute(text("SELECT count(*) FROM event_outbox"))).scalar()
        response = await outage.client.post("/v1/zones", json={"name": "fail-at-commit"}, headers=AUTH)
        assert response.status_code == 500
        assert response.json()["error"] == "internal_error"
        async with engine.connect() as conn:
            assert (
                await conn.execute(text("SELECT count(*) FROM zones WHERE name = 'fail-at-commit'"))
            ).scalar() == 0
            assert (await conn.execute(text("SELECT count(*) FROM event_outbox"))).scalar() == before
    finally:
        await engine.dispose()


FAIL_AT_COMMIT_FUNCTION = """
CREATE FUNCTION fail_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.name = 'fail-at-commit' THEN RAISE EXCEPTION 'refused at commit'; END IF;
  RETURN NULL;
END $$
"""
FAIL_AT_COMMIT_TRIGGER = """
CREATE CONSTRAINT TRIGGER zones_fail_at_commit AFTER INSERT ON zones
DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION fail_at_commit()
"""
