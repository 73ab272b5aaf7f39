"""/metrics: requests by route template (bounded labels), the reaper's figures per job, the audit
sealer's backlog and the database pool's gauges, all against real Postgres and Redis."""

from __future__ import annotations

import asyncio
import re
import time

import httpx
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from caracal.db.engine import create_engine
from caracal.settings import Settings
from caracal_api.metrics import HttpMetrics
from caracal_reaper.job import Job, Outcome
from caracal_reaper.jobs import AUDIT_SEAL
from caracal_reaper.runner import Reaper
from tests.support import eventually


def _value(body: str, series: str) -> float | None:
    """The value of one exact series (name and labels as exposed), None when absent."""
    found = re.search(rf"^{re.escape(series)} (\S+)$", body, re.M)
    return float(found.group(1)) if found else None


def _routes(body: str) -> set[str]:
    return set(re.findall(r'^caracal_api_http_requests_total\{[^}]*route="([^"]*)"', body, re.M))


async def test_request_to_a_zone_is_counted_under_its_route_template(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """GET /v1/zones/<id> is labelled /v1/zones/{zone_id}: the id itself never becomes a label."""
    zone = (await client.post("/v1/zones", json={"name": "Acme"}, headers=admin)).json()
    assert (await client.get(f"/v1/zones/{zone['id']}", headers=admin)).status_code == 200
    body = (await client.get("/metrics")).text
    series = 'caracal_api_http_requests_total{method="GET",route="/v1/zones/{zone_id}",status="200"}'
    assert _value(body, series) == 1
    assert zone["id"] not in body
    labels = '{le="+Inf",method="GET",route="/v1/zones/{zone_id}"}'
    assert _value(body, f"caracal_api_http_request_duration_seconds_bucket{labels}") == 1


async def test_unknown_paths_share_one_route_label_whatever_their_number(client: httpx.AsyncClient) -> None:
    """404s of made-up paths are all counted as route="unmatched": a scanner adds no label values."""
    await client.get("/nope")
    await client.get("/metrics")  # a scrape is counted once answered: the next one shows it
    before = _routes((await client.get("/metrics")).text)
    for n in range(20):
        assert (await client.get(f"/v1/made-up-{n}/x")).status_code == 404
        assert (await client.get(f"/scan-{n}.php")).status_code == 404
    body = (await client.get("/metrics")).text
    assert _routes(body) == before
    assert _value(body, 'caracal_api_http_requests_total{method="GET",route="unmatched",status="404"}') == 41


async def test_sealer_tail_and_reaper_figures_show_in_metrics(
    client: httpx.AsyncClient, admin: dict[str, str], settings: Settings, engine: AsyncEngine, redis: Redis
) -> None:
    """Admin mutations leave unsealed audit rows; one sealer run chains them, and /metrics shows the
    tail back at 0, the run counted with the rows it sealed and its last success time."""
    assert settings.audit_hmac_key is not None
    for name in ("A", "B", "C"):
        assert (await client.post("/v1/zones", json={"name": name}, headers=admin)).status_code == 201
    body = (await client.get("/metrics")).text
    unsealed = _value(body, "caracal_audit_unsealed_rows")
    assert unsealed is not None and unsealed >= 3
    assert (_value(body, "caracal_audit_oldest_unsealed_age_seconds") or 0) > 0
    assert "caracal_reaper_job_runs_total{" not in body  # no run yet: no job's series

    started = time.time()
    await Reaper(settings, engine, redis, [AUDIT_SEAL]).run_due()
    body = (await client.get("/metrics")).text
    assert _value(body, "caracal_audit_unsealed_rows") == 0
    assert _value(body, "caracal_audit_oldest_unsealed_age_seconds") == 0
    assert _value(body, 'caracal_reaper_job_runs_total{job="audit-seal"}') == 1
    assert (_value(body, 'caracal_reaper_job_rows_total{job="audit-seal"}') or 0) >= unsealed
    assert _value(body, 'caracal_reaper_job_failures_total{job="audit-seal"}') == 0
    last = _value(body, 'caracal_reaper_job_last_success_timestamp_seconds{job="audit-seal"}')
    assert last is not None and started - 1 <= last <= time.time() + 1


async def test_pool_gauges_count_connections_in_use_and_requests_waiting(settings: Settings) -> None:
    """With its one connection held, a second checkout waits: in_use 1, waiting 1; released, the
    waiter gets the connection (waiting 0), and when it is done nothing is in use."""
    engine = create_engine(settings, pool_size=1)
    metrics = HttpMetrics()
    metrics.watch_pool(engine)

    def figures() -> tuple[float | None, ...]:
        body = "\n".join(metrics.render())
        return tuple(_value(body, f"caracal_api_db_pool_{n}") for n in ("connections", "in_use", "waiting"))

    try:
        held = await engine.connect().start()
        waiter = asyncio.create_task(engine.connect().start())
        await eventually(lambda: figures() == (1, 1, 1), "the second checkout counted as waiting")
        await held.close()
        second = await waiter
        assert figures() == (1, 1, 0)
        await second.close()
        assert figures() == (1, 0, 0)
    finally:
        await engine.dispose()


async def _failing_batch(_conn: AsyncConnection, _settings: Settings) -> Outcome:
    raise RuntimeError("boom")


async def test_failed_reaper_run_is_counted_and_sets_no_last_success(
    client: httpx.AsyncClient, settings: Settings, engine: AsyncEngine, redis: Redis
) -> None:
    failing = Job("always-fails", 424242, budget_s=1.0, batch=_failing_batch)
    await Reaper(settings, engine, redis, [failing]).run_due()
    body = (await client.get("/metrics")).text
    assert _value(body, 'caracal_reaper_job_failures_total{job="always-fails"}') == 1
    assert _value(body, 'caracal_reaper_job_runs_total{job="always-fails"}') == 0
    assert _value(body, 'caracal_reaper_job_last_success_timestamp_seconds{job="always-fails"}') == 0


async def test_reaper_without_redis_still_seals(
    client: httpx.AsyncClient, admin: dict[str, str], settings: Settings, engine: AsyncEngine
) -> None:
    """The figures are lost while Redis does not answer (a port nobody listens on); the sealing is not."""
    assert (await client.post("/v1/zones", json={"name": "A"}, headers=admin)).status_code == 201
    nowhere = Redis.from_url("redis://127.0.0.1:1", socket_connect_timeout=1)
    try:
        await Reaper(settings, engine, nowhere, [AUDIT_SEAL]).run_due()
    finally:
        await nowhere.aclose()
    assert _value((await client.get("/metrics")).text, "caracal_audit_unsealed_rows") == 0
