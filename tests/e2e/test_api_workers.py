"""`caracal api` with several worker processes: one migration, summed metrics, draining, forwarded headers."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from caracal.db.engine import plain_url
from tests.conftest import recreate_database
from tests.e2e.test_processes import call
from tests.support import Servers, Service, eventually, service_env, start_service, wait_ready

pytestmark = pytest.mark.e2e


def _workers(service: Service) -> list[int]:
    children = Path(f"/proc/{service.process.pid}/task/{service.process.pid}/children")
    return [int(pid) for pid in children.read_text().split()] if children.exists() else []


def _scrape(service: Service) -> str:
    import urllib.request

    with urllib.request.urlopen(f"{service.url}/metrics", timeout=5) as response:
        return str(response.read().decode())


def _metric(service: Service, route: str) -> float:
    """GET requests of `route` answered 200, summed by /metrics over every worker."""
    pattern = (
        rf'^caracal_api_http_requests_total\{{method="GET",route="{re.escape(route)}",status="200"\}} (\S+)$'
    )
    return sum(float(value) for value in re.findall(pattern, _scrape(service), re.M))


def _gauge(service: Service, name: str) -> float | None:
    found = re.search(rf"^{name} (\S+)$", _scrape(service), re.M)
    return float(found.group(1)) if found else None


async def _running_api(
    servers: Servers, logdir: Path, started: list[Service], database: str, **overrides: str
) -> tuple[Service, dict[str, str]]:
    """`caracal api` on its own new database, ready; stopped at the end of the test."""
    env = service_env(await recreate_database(servers, database), servers.redis_url, **overrides)
    api = start_service("api", env, logdir)
    started.append(api)
    await asyncio.to_thread(wait_ready, api)
    return api, env


async def test_two_workers_migrate_once_and_metrics_count_every_worker(
    servers: Servers, logdir: Path, started: list[Service]
) -> None:
    """CARACAL_API_WORKERS=2: two worker processes sharing the pool budget, one migration, and
    /metrics sums both."""
    api, _ = await _running_api(
        servers, logdir, started, "e2e_workers", CARACAL_API_WORKERS="2", CARACAL_DB_POOL_MAX="6"
    )
    assert len(_workers(api)) == 2, api.log()
    assert len(re.findall(r"migrations: applied", api.log())) == 1
    assert "2 workers, 3 database connections each (CARACAL_DB_POOL_MAX=6)" in api.log()
    before = await asyncio.to_thread(_metric, api, "/health")
    with ThreadPoolExecutor(16) as pool:  # new connections spread over both workers' accept queues
        statuses = list(pool.map(lambda _: call(api, "GET", "/health")[0], range(200)))
    assert statuses == [200] * 200

    # a worker counts a request right after answering it: wait for the last counts to land
    async def all_counted() -> bool:
        return await asyncio.to_thread(_metric, api, "/health") >= before + 200

    await eventually(all_counted, "every request counted", within=5)
    assert await asyncio.to_thread(_metric, api, "/health") == before + 200


async def test_pool_gauges_sum_live_workers_and_routes_are_templates_across_workers(
    servers: Servers, logdir: Path, started: list[Service]
) -> None:
    """Two workers of 3 connections: the pool size is 6 on whichever worker answers, and still 6
    after a killed worker is replaced (the dead one's gauges are dropped, not added); a zone read
    on either worker is counted under /v1/zones/{zone_id}."""
    api, _ = await _running_api(
        servers, logdir, started, "e2e_workers_pool", CARACAL_API_WORKERS="2", CARACAL_DB_POOL_MAX="6"
    )
    await eventually(lambda: api.log().count("Application startup complete") == 2, "both workers started")
    for _ in range(10):
        assert await asyncio.to_thread(_gauge, api, "caracal_api_db_pool_connections") == 6
    assert (await asyncio.to_thread(_gauge, api, "caracal_api_db_pool_waiting")) == 0
    status, zone = await asyncio.to_thread(call, api, "POST", "/v1/zones", {"name": "Pooled"})
    assert status == 201
    with ThreadPoolExecutor(8) as pool:
        reads = list(pool.map(lambda _: call(api, "GET", f"/v1/zones/{zone['id']}")[0], range(40)))
    assert reads == [200] * 40

    async def reads_counted() -> bool:
        return await asyncio.to_thread(_metric, api, "/v1/zones/{zone_id}") == 40

    await eventually(reads_counted, "every zone read counted under its template", within=5)
    assert zone["id"] not in await asyncio.to_thread(_scrape, api)

    killed = _workers(api)[0]
    os.kill(killed, signal.SIGKILL)
    await eventually(lambda: len(_workers(api)) == 2 and killed not in _workers(api), "worker replaced")
    await eventually(lambda: api.log().count("Application startup complete") == 3, "replacement started")
    for _ in range(10):
        assert await asyncio.to_thread(_gauge, api, "caracal_api_db_pool_connections") == 6


async def test_sigterm_drains_every_worker_within_the_shutdown_timeout(
    servers: Servers, logdir: Path, started: list[Service]
) -> None:
    """A PATCH held up by a row lock finishes with 200 after SIGTERM; the API exits 0 in time."""
    api, env = await _running_api(
        servers,
        logdir,
        started,
        "e2e_workers_term",
        CARACAL_API_WORKERS="2",
        CARACAL_SHUTDOWN_TIMEOUT_MS="8000",
    )
    # /ready answers once one worker is up; under load the other may still be starting
    await eventually(lambda: api.log().count("Application startup complete") == 2, "both workers started")
    status, zone = await asyncio.to_thread(call, api, "POST", "/v1/zones", {"name": "Held"})
    assert status == 201
    holder = await asyncpg.connect(plain_url(env["DATABASE_URL"]))
    result: dict[str, Any] = {}
    try:
        tx = holder.transaction()
        await tx.start()
        await holder.execute("SELECT 1 FROM zones WHERE id = $1 FOR UPDATE", zone["id"])
        patch = threading.Thread(
            target=lambda: result.update(
                answer=call(api, "PATCH", f"/v1/zones/{zone['id']}", {"name": "Released"})
            )
        )
        patch.start()
        await _waiting_for_lock(env["DATABASE_URL"])
        started_stop = time.monotonic()
        api.process.send_signal(signal.SIGTERM)
        # both workers are draining; the held request keeps the API running however long it takes
        await eventually(lambda: api.log().count("Shutting down") == 2, "both workers draining")
        assert api.process.poll() is None, "the API stopped before its in-flight request finished"
        await tx.rollback()
    finally:
        await holder.close()
    await asyncio.to_thread(patch.join, 10)
    assert result["answer"][0] == 200
    code = await asyncio.to_thread(api.process.wait, 15)
    assert code == 0
    assert time.monotonic() - started_stop < 8.0 + 5.0


async def _waiting_for_lock(database_url: str) -> None:
    """Watched from its own connection (a transaction sees one snapshot of the lock table)."""
    conn = await asyncpg.connect(plain_url(database_url))
    try:

        async def waiting() -> bool:
            return bool(await conn.fetchval("SELECT count(*) > 0 FROM pg_locks WHERE NOT granted"))

        await eventually(waiting, "the PATCH waiting for the locked row")
    finally:
        await conn.close()


async def test_forwarded_for_does_not_move_the_peer_unless_trusted(
    servers: Servers, logdir: Path, started: list[Service]
) -> None:
    """The server itself ignores X-Forwarded-For: a loopback peer claiming another address still
    bootstraps (it is the socket peer that counts), and rotating the header escapes no limit."""
    api, _ = await _running_api(
        servers,
        logdir,
        started,
        "e2e_workers_xff",
        CARACAL_LOCAL_BOOTSTRAP_ENABLED="true",
        ADMIN_AUTH_FAIL_LIMIT_PER_MIN="2",
        CARACAL_ADMIN_TOKEN="",
    )
    import urllib.error
    import urllib.request

    def post(path: str, headers: dict[str, str]) -> int:
        request = urllib.request.Request(f"{api.url}{path}", data=b"", method="POST", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return int(response.status)
        except urllib.error.HTTPError as err:
            return err.code

    assert await asyncio.to_thread(post, "/v1/local/bootstrap", {"X-Forwarded-For": "203.0.113.9"}) == 201
    statuses = [
        await asyncio.to_thread(
            post, "/v1/zones", {"Authorization": "Bearer wrong-token", "X-Forwarded-For": f"198.51.100.{n}"}
        )
        for n in range(3)
    ]
    assert statuses == [401, 401, 429]
