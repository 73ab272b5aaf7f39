"""The three processes started the way `caracal up` starts them, on the session's real servers."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from redis.asyncio import Redis

from caracal.db.engine import create_engine, plain_url, transaction
from caracal.db.migrate import head_revision, run_migrations
from caracal.events import CHANGES, verify
from caracal.outbox import WAKE_CHANNEL, record_event
from caracal.settings import load_settings
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
    applied = re.compile(rf"migrations: applied (\S+, )*{head_revision()}$", re.M)
    assert sum(bool(applied.search(log)) for log in logs) == 1
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
    """A token revoked through one replica is refused by another within a second (the broadcast
    makes it milliseconds; the token cache's 1 s TTL bounds it if the broadcast is lost)."""
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
    revoked = time.monotonic()
    while True:
        status, body = await asyncio.to_thread(call, second, "GET", "/v1/zones", None, created["token"])
        if status != 200 or time.monotonic() - revoked > 1.0:
            break
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
        await asyncio.to_thread(service.wait_logged, f"{kind}: poll loop started")
    begun = time.monotonic()
    code = await asyncio.to_thread(service.stop, signal.SIGTERM, 10)
    assert code == 0, service.log()[-3000:]
    assert time.monotonic() - begun < 3.0 + 1.0


async def test_commit_hint_wakes_an_idle_dispatcher_long_before_its_poll(
    servers: Servers, logdir: Path, started: list[Service]
) -> None:
    """With a 60 s poll, an API write still reaches its stream within 2 s: only the wake-up hint can."""
    env = service_env(await database(servers, "e2e_wake"), servers.redis_url, CARACAL_OUTBOX_POLL_MS="60000")
    api = start_service("api", env, logdir)
    started.extend([api, start_service("dispatcher", env, logdir)])
    await asyncio.to_thread(wait_ready, api)
    redis = Redis.from_url(servers.redis_url, decode_responses=True)
    try:
        await _until_subscribed(redis)
        # A first event, delivered and marked: the dispatcher has polled and gone to sleep for 60 s.
        first_cursor = await _stream_end(redis)
        status, first = await asyncio.to_thread(call, api, "POST", "/v1/zones", {"name": "Before"})
        assert status == 201
        await _entry_for(redis, first_cursor, first["id"], deadline=time.monotonic() + 20)
        await _until_marked_delivered(env["DATABASE_URL"], first["id"])
        cursor = await _stream_end(redis)
        sent = time.monotonic()
        status, zone = await asyncio.to_thread(call, api, "POST", "/v1/zones", {"name": "Wake"})
        assert status == 201
        await _entry_for(redis, cursor, zone["id"], deadline=sent + 2.0)
    finally:
        await redis.aclose()


async def _stream_end(redis: Redis) -> str:
    last = await redis.xrevrange(CHANGES, count=1)
    return str(last[0][0]) if last else "0-0"


async def _until_marked_delivered(database_url: str, zone_id: str) -> None:
    conn = await asyncpg.connect(plain_url(database_url))
    deadline = time.monotonic() + 20
    try:
        while time.monotonic() < deadline:
            marked = await conn.fetchval(
                "SELECT dispatched_at IS NOT NULL FROM event_outbox WHERE payload_json->>'entity_id' = $1",
                zone_id,
            )
            if marked:
                return
            await asyncio.sleep(0.02)
    finally:
        await conn.close()
    raise AssertionError(f"the event of zone {zone_id} was never marked delivered")


async def test_sigterm_lets_the_batch_in_flight_finish_before_the_dispatcher_exits(
    servers: Servers, logdir: Path, started: list[Service]
) -> None:
    """SIGTERM while a batch waits on Redis: it is published and marked, then the process exits 0."""
    env = service_env(
        await database(servers, "e2e_drain"), servers.redis_url, CARACAL_SHUTDOWN_TIMEOUT_MS="8000"
    )
    await _migrated(env)
    stream = "caracal.test.drain"
    redis = Redis.from_url(servers.redis_url, decode_responses=True)
    dispatcher = start_service("dispatcher", env, logdir)
    started.append(dispatcher)
    try:
        await _until_subscribed(redis)
        await redis.execute_command("CLIENT", "PAUSE", "3000", "WRITE")  # the next publish waits 3 s
        paused_until = time.monotonic() + 3.0
        ids = await _insert_events(env["DATABASE_URL"], stream, 5)
        await _until_a_publish_waits(redis)
        dispatcher.process.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(dispatcher.process.wait, 20)
        exited = time.monotonic()
        entries = await redis.xrange(stream)
    finally:
        await redis.execute_command("CLIENT", "UNPAUSE")
        await redis.aclose()
    assert code == 0, dispatcher.log()[-3000:]
    assert exited >= paused_until - 0.1  # it waited for the batch instead of abandoning it
    assert [fields["outbox_id"] for _id, fields in entries] == ids
    assert await _undelivered(env["DATABASE_URL"]) == 0
    assert "abandoning in-flight work" not in dispatcher.log()


async def _migrated(env: dict[str, str]) -> None:
    engine = create_engine(load_settings(env), pool_size=1)
    try:
        await run_migrations(engine)
    finally:
        await engine.dispose()


async def _insert_events(database_url: str, stream: str, count: int) -> list[str]:
    engine = create_engine(load_settings(service_env(database_url, "redis://127.0.0.1:1/0")), pool_size=1)
    ids = []
    try:
        async with transaction(engine) as conn:
            for n in range(count):
                ids.append(await record_event(conn, stream, {"n": n}))
    finally:
        await engine.dispose()
    return ids


async def _until_a_publish_waits(redis: Redis) -> None:
    """A client blocked by the pause: the dispatcher's batch is in flight."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        clients = await redis.client_list()
        if any(
            "b" in client.get("flags", "") and client.get("cmd", "").startswith("eval") for client in clients
        ):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"no publish waited on the paused Redis: {await redis.client_list()}")


async def _undelivered(database_url: str) -> int:
    conn = await asyncpg.connect(plain_url(database_url))
    try:
        return int(await conn.fetchval("SELECT count(*) FROM event_outbox WHERE dispatched_at IS NULL"))
    finally:
        await conn.close()


async def _until_subscribed(redis: Redis) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        counts = await redis.pubsub_numsub(WAKE_CHANNEL)
        if counts and int(counts[0][1]) > 0:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the dispatcher never subscribed to the wake-up channel")
