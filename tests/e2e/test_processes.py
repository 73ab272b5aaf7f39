"""The three processes started the way `caracal up` starts them, on the session's real servers."""

from __future__ import annotations

import asyncio
import json
import signal
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from redis.asyncio import Redis

from caracal.db.engine import plain_url
from caracal.db.migrate import head_revision
from caracal.events import CHANGES, verify
from caracal.outbox import WAKE_CHANNEL
from tests.conftest import recreate_database
from tests.support import ADMIN_TOKEN, HMAC_KEY_HEX, Servers, Service, service_env, start_service, wait_ready

pytestmark = pytest.mark.e2e


def call(
    service: Service, method: str, path: str, body: dict[str, Any] | None = None, token: str = ADMIN_TOKEN
) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        f"{service.url}{path}",
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


@pytest.fixture
def started() -> Iterator[list[Service]]:
    """Services a test started; stopped (SIGTERM) at the end whatever happens."""
    services: list[Service] = []
    yield services
    for service in services:
        service.stop()


async def database(servers: Servers, name: str) -> str:
    return await recreate_database(servers, name)


async def test_four_api_replicas_on_an_empty_database_migrate_exactly_once(
    servers: Servers, logdir: Path, started: list[Service]
) -> None:
    """Four APIs started at the same moment all become ready; one applied the migrations, three found head."""
    env = service_env(await database(servers, "e2e_race"), servers.redis_url)
    started.extend(start_service("api", env, logdir, tag=f"-race{n}") for n in range(4))
    for service in started:
        await asyncio.to_thread(wait_ready, service)
    logs = [service.log() for service in started]
    assert sum(f"migrations: applied {head_revision()}" in log for log in logs) == 1
    assert sum("schema already at head" in log for log in logs) == 3
    conn = await asyncpg.connect(plain_url(env["DATABASE_URL"]))
    try:
        seeded = await conn.fetchval("SELECT count(*) FROM admin_tokens WHERE revoked_at IS NULL")
        versions = await conn.fetch("SELECT version_num FROM alembic_version")
    finally:
        await conn.close()
    assert seeded == 1
    assert [row["version_num"] for row in versions] == [head_revision()]


async def test_zone_event_reaches_its_stream_signed_within_two_seconds(
    servers: Servers, logdir: Path, started: list[Service]
) -> None:
    """POST /v1/zones through a real API; the dispatcher publishes a signed caracal.changes entry."""
    env = service_env(await database(servers, "e2e_flow"), servers.redis_url)
    api = start_service("api", env, logdir)
    started.extend([api, start_service("dispatcher", env, logdir), start_service("reaper", env, logdir)])
    await asyncio.to_thread(wait_ready, api)
    redis = Redis.from_url(servers.redis_url, decode_responses=True)
    try:
        last = await redis.xrevrange(CHANGES, count=1)
        cursor = last[0][0] if last else "0-0"
        sent = time.monotonic()
        status, zone = await asyncio.to_thread(call, api, "POST", "/v1/zones", {"name": "E2E Zone"})
        assert status == 201
        entry = await _entry_for(redis, cursor, zone["id"], deadline=sent + 2.0)
    finally:
        await redis.aclose()
    assert entry["event"] == "zone.created"
    assert entry["entity_type"] == "zone"
    assert verify(bytes.fromhex(HMAC_KEY_HEX), CHANGES, entry)


async def _entry_for(redis: Redis, cursor: str, zone_id: str, deadline: float) -> dict[str, str]:
    while (remaining := deadline - time.monotonic()) > 0:
        found = await redis.xread({CHANGES: cursor}, block=max(1, int(remaining * 1000)), count=100)
        for _stream, entries in found:
            for entry_id, fields in entries:
                cursor = entry_id
                if fields.get("entity_id") == zone_id:
                    return dict(fields)
    raise AssertionError(f"no caracal.changes entry for zone {zone_id} within 2 s")


async def test_revoked_token_stops_working_on_every_replica(
    servers: Servers, logdir: Path, started: list[Service]
) -> None:
    """A token revoked through one replica is refused by another on its very next request."""
    env = service_env(await database(servers, "e2e_revoke"), servers.redis_url)
    started.extend(start_service("api", env, logdir, tag=f"-r{n}") for n in range(2))
    first, second = started
    for service in started:
        await asyncio.to_thread(wait_ready, service)
    status, created = await asyncio.to_thread(
        call, first, "POST", "/v1/admin-tokens", {"name": "ops", "scope": "global"}
    )
    assert status == 201
    assert (await asyncio.to_thread(call, second, "GET", "/v1/zones", None, created["token"]))[0] == 200
    assert (await asyncio.to_thread(call, first, "DELETE", f"/v1/admin-tokens/{created['id']}"))[0] == 204
    status, body = await asyncio.to_thread(call, second, "GET", "/v1/zones", None, created["token"])
    assert (status, body["error"]) == (401, "invalid_admin_token")


@pytest.mark.parametrize("kind", ["api", "dispatcher", "reaper"])
async def test_sigterm_stops_each_process_cleanly_within_the_shutdown_timeout(
    servers: Servers, logdir: Path, started: list[Service], kind: str
) -> None:
    """SIGTERM: the process drains and exits 0 within CARACAL_SHUTDOWN_TIMEOUT_MS."""
    env = service_env(
        await database(servers, f"e2e_term_{kind}"), servers.redis_url, CARACAL_SHUTDOWN_TIMEOUT_MS="3000"
    )
    api = start_service("api", env, logdir)
    started.append(api)
    await asyncio.to_thread(wait_ready, api)
    service = api if kind == "api" else start_service(kind, env, logdir)
    if service is not api:
        started.append(service)
        await asyncio.sleep(1.5)
    begun = time.monotonic()
    code = await asyncio.to_thread(service.stop, signal.SIGTERM, 10)
    assert code == 0, service.log()[-3000:]
    assert time.monotonic() - begun < 3.0 + 1.0


async def test_commit_hint_wakes_an_idle_dispatcher_long_before_its_poll(
    servers: Servers, logdir: Path, started: list[Service]
) -> None:
    """With a 60 s poll, an API write still reaches its stream within a second: the wake-up hint."""
    env = service_env(await database(servers, "e2e_wake"), servers.redis_url, CARACAL_OUTBOX_POLL_MS="60000")
    api = start_service("api", env, logdir)
    started.extend([api, start_service("dispatcher", env, logdir)])
    await asyncio.to_thread(wait_ready, api)
    redis = Redis.from_url(servers.redis_url, decode_responses=True)
    try:
        await _until_subscribed(redis)
        await asyncio.sleep(1.0)  # let the dispatcher finish its first poll and go to sleep for 60 s
        last = await redis.xrevrange(CHANGES, count=1)
        sent = time.monotonic()
        status, zone = await asyncio.to_thread(call, api, "POST", "/v1/zones", {"name": "Wake"})
        assert status == 201
        await _entry_for(redis, last[0][0] if last else "0-0", zone["id"], deadline=sent + 1.0)
    finally:
        await redis.aclose()


async def _until_subscribed(redis: Redis) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        counts = await redis.pubsub_numsub(WAKE_CHANNEL)
        if counts and int(counts[0][1]) > 0:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the dispatcher never subscribed to the wake-up channel")
