"""The request path under faults: revocations across workers, a hung Redis, a full pool, audit floods."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from caracal.db.engine import create_engine, transaction
from caracal.db.migrate import run_migrations
from caracal.domain.admin_tokens import seed_env_token
from caracal.embedded import EmbeddedPostgres, EmbeddedRedis, free_port
from caracal.settings import Settings
from caracal_api.audit_trail import AuditQueue
from caracal_api.resources import Resources
from caracal_api.token_cache import CHANNEL
from tests.app_pool import bound_app
from tests.support import ADMIN_TOKEN, eventually

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@asynccontextmanager
async def worker(
    settings: Settings, engine: AsyncEngine, redis: Redis, **overrides: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, Resources]]:
    """One API worker in process: its own token cache, limits and audit queue."""
    res = Resources(settings=replace(settings, **overrides), engine=engine, redis=redis)
    try:
        with bound_app(res) as app:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://caracal.test") as http:
                yield http, res
    finally:
        await res.settled()
        await res.stop()


@asynccontextmanager
async def two_workers(
    settings: Settings, engine: AsyncEngine, redis: Redis
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """Worker A, and worker B caching tokens for a minute: only a broadcast can end one early."""
    await _seeded(engine)
    async with (
        worker(settings, engine, redis) as (a, _),
        worker(settings, engine, redis, auth_cache_ttl_ms=60_000) as (b, _),
    ):
        yield a, b


async def _seeded(engine: AsyncEngine) -> None:
    async with transaction(engine) as conn:
        await seed_env_token(conn, ADMIN_TOKEN)


async def _subscribed(redis: Redis, count: int) -> None:
    async def listening() -> bool:
        return int(dict(await redis.pubsub_numsub(CHANNEL)).get(CHANNEL.encode(), 0)) >= count

    await eventually(listening, "workers subscribed to token invalidations", within=5)


async def _refused_within(http: httpx.AsyncClient, headers: dict[str, str], path: str, limit: float) -> float:
    async def refused() -> bool:
        return (await http.get(path, headers=headers)).status_code == 401

    return await eventually(refused, f"{path} refusing the token", within=limit)


async def _token(http: httpx.AsyncClient, **body: Any) -> tuple[str, dict[str, str]]:
    response = await http.post("/v1/admin-tokens", json={"name": "ops", **body}, headers=ADMIN)
    assert response.status_code == 201, response.text
    created = response.json()
    return created["id"], {"Authorization": f"Bearer {created['token']}"}


async def test_revocation_reaches_another_worker_through_the_broadcast(
    settings: Settings, engine: AsyncEngine, redis: Redis
) -> None:
    """Worker B caches for a minute, yet refuses a token revoked through worker A within a second."""
    async with two_workers(settings, engine, redis) as (a, b):
        token_id, headers = await _token(a, scope="global")
        assert (await b.get("/v1/zones", headers=headers)).status_code == 200
        await _subscribed(redis, 2)
        assert (await a.delete(f"/v1/admin-tokens/{token_id}", headers=ADMIN)).status_code == 204
        assert (await a.get("/v1/zones", headers=headers)).status_code == 401
        assert await _refused_within(b, headers, "/v1/zones", 1.0) < 1.0


async def test_without_redis_the_cache_ttl_bounds_a_revocation(
    settings: Settings, engine: AsyncEngine, redis: Redis
) -> None:
    """Worker B cannot hear broadcasts (its Redis is gone); the 1 s TTL still ends the token."""
    await _seeded(engine)
    dead_url = f"redis://127.0.0.1:{free_port()}/0"
    dead = Redis.from_url(dead_url, socket_connect_timeout=0.05)
    async with (
        worker(settings, engine, redis) as (a, _),
        worker(settings, engine, dead, redis_url=dead_url, auth_cache_ttl_ms=1000) as (b, _),
    ):
        token_id, headers = await _token(a, scope="global")
        assert (await b.get("/v1/zones", headers=headers)).status_code == 200
        assert (await a.delete(f"/v1/admin-tokens/{token_id}", headers=ADMIN)).status_code == 204
        assert await _refused_within(b, headers, "/v1/zones", 1.5) < 1.5
    await dead.aclose()


async def test_archiving_a_zone_refuses_its_zone_tokens_at_once(
    settings: Settings, engine: AsyncEngine, redis: Redis
) -> None:
    """A zone token works until its zone is archived; then it is refused here and by other workers."""
    async with two_workers(settings, engine, redis) as (a, b):
        zone = (await a.post("/v1/zones", json={"name": "Archived Soon"}, headers=ADMIN)).json()
        _, headers = await _token(a, scope="zone", zone_id=zone["id"])
        own = f"/v1/zones/{zone['id']}"
        assert (await a.get(own, headers=headers)).status_code == 200
        assert (await b.get(own, headers=headers)).status_code == 200
        await _subscribed(redis, 2)
        assert (await a.delete(own, headers=ADMIN)).status_code == 204
        assert (await a.get(own, headers=headers)).status_code == 401
        assert await _refused_within(b, headers, own, 1.0) < 1.0


async def test_a_hung_redis_costs_a_request_well_under_a_second(
    settings: Settings, engine: AsyncEngine, tmp_path: Path
) -> None:
    """Redis stopped with SIGSTOP (accepts, never answers), limits on: GETs still answer quickly, and
    /ready says redis_unreachable within a probe's patience."""
    await _seeded(engine)
    server = EmbeddedRedis(tmp_path / "redis")
    url = server.start()
    client = Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)  # as build_resources
    try:
        async with worker(
            settings,
            engine,
            client,
            redis_url=url,
            v1_rate_limit_per_min=600,
            auth_fail_limit_per_min=60,
            ready_rate_limit_per_min=120,
        ) as (http, _):
            assert (await http.get("/v1/zones", headers=ADMIN)).status_code == 200
            assert server.process is not None
            server.process.send_signal(signal.SIGSTOP)
            try:
                for _ in range(10):
                    started = time.monotonic()
                    assert (await http.get("/v1/zones", headers=ADMIN)).status_code == 200
                    assert time.monotonic() - started < 0.5
                started = time.monotonic()
                ready = await http.get("/ready")
                assert (ready.status_code, ready.json()["error"]) == (503, "redis_unreachable")
                assert time.monotonic() - started < 2.0
            finally:
                server.process.send_signal(signal.SIGCONT)
    finally:
        await client.aclose()
        server.destroy()


async def test_an_exhausted_pool_answers_503_overloaded_with_retry_after(
    settings: Settings, engine: AsyncEngine
) -> None:
    """Pool of 2: while both are held, requests get a fast 503; under 64 at once, only 200 or that 503."""
    await _seeded(engine)
    small = create_engine(replace(settings, db_pool_timeout_ms=100), pool_size=2)
    try:
        async with worker(settings, small, Redis.from_url(str(settings.redis_url))) as (http, res):
            assert (await http.get("/v1/zones", headers=ADMIN)).status_code == 200
            async with small.connect(), small.connect():
                started = time.monotonic()
                busy = await http.get("/v1/zones", headers=ADMIN)
                assert time.monotonic() - started < 1.0
            assert busy.status_code == 503
            assert busy.json()["error"] == "overloaded"
            assert busy.headers["retry-after"] == "1"
            timings: list[float] = []

            async def timed() -> int:
                started = time.monotonic()
                status = (await http.get("/v1/zones", headers=ADMIN)).status_code
                timings.append(time.monotonic() - started)
                return status

            statuses = await asyncio.gather(*(timed() for _ in range(64)))
            assert set(statuses) <= {200, 503}
            assert sorted(timings)[int(len(timings) * 0.99) - 1] < 2.0
            await res.redis.aclose()
    finally:
        await small.dispose()


async def test_the_failure_audit_queue_is_bounded_and_counts_what_it_drops(engine: AsyncEngine) -> None:
    """Offers beyond the queue's size are dropped and counted; what was queued is written."""
    queue = AuditQueue(engine, size=3)
    row = {
        "id": "",
        "request_id": "r",
        "actor_id": None,
        "actor_name": None,
        "actor_scope": None,
        "action": "GET /v1/zones/x",
        "method": "GET",
        "path": "/v1/zones/x",
        "zone_id": None,
        "entity_type": None,
        "entity_id": None,
        "status_code": 404,
        "payload_json": {},
    }
    for n in range(10):
        queue.offer({**row, "id": f"audit-{n}"})
    assert queue.dropped == 7
    await queue.flush()
    await queue.stop()
    async with engine.connect() as conn:
        written = (await conn.execute(text("SELECT count(*) FROM admin_audit_events"))).scalar()
    assert (written, queue.written) == (3, 3)


async def test_a_mutation_commits_its_audit_row_with_it(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    """The POST's audit row is there when the response is, with the response's status."""
    response = await client.post("/v1/zones", json={"name": "Audited"}, headers=ADMIN)
    assert response.status_code == 201
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text("SELECT status_code, entity_id FROM admin_audit_events WHERE method = 'POST'")
            )
        ).all()
    assert [tuple(r) for r in rows] == [(201, None)]


async def test_a_read_after_a_postgres_restart_is_retried_on_a_fresh_connection(
    settings: Settings, tmp_path: Path
) -> None:
    """No pre-ping: the pooled connection is dead after the restart, the read is retried once and
    answers 200; with Postgres down the answer is 503 postgres_unreachable, then it recovers."""
    server = EmbeddedPostgres(tmp_path / "pg", durable=False, database="restarted")
    url = server.start()
    own = replace(settings, database_url=url)
    own_engine = create_engine(own, pool_size=2)
    try:
        await run_migrations(own_engine)
        await _seeded(own_engine)
        async with worker(own, own_engine, Redis.from_url(str(settings.redis_url))) as (http, res):
            zone = (await http.post("/v1/zones", json={"name": "Survivor"}, headers=ADMIN)).json()
            assert (await http.get(f"/v1/zones/{zone['id']}", headers=ADMIN)).status_code == 200
            await asyncio.to_thread(server.restart)
            assert (await http.get(f"/v1/zones/{zone['id']}", headers=ADMIN)).status_code == 200
            await asyncio.to_thread(server.stop)
            down = await http.get(f"/v1/zones/{zone['id']}", headers=ADMIN)
            assert (down.status_code, down.json()["error"]) == (503, "postgres_unreachable")
            await asyncio.to_thread(server.start)
            assert (await http.get(f"/v1/zones/{zone['id']}", headers=ADMIN)).status_code == 200
            await res.redis.aclose()
    finally:
        await own_engine.dispose()
        server.destroy()
