"""/metrics of a real API (two workers) reports what the real reaper and dispatcher processes did."""

from __future__ import annotations

import asyncio
import re
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import recreate_database
from tests.e2e.test_processes import call
from tests.support import Servers, Service, eventually, service_env, start_service, wait_ready

pytestmark = pytest.mark.e2e


def _scrape(service: Service) -> str:
    with urllib.request.urlopen(f"{service.url}/metrics", timeout=5) as response:
        return str(response.read().decode())


def _value(body: str, series: str) -> float:
    found = re.search(rf"^{re.escape(series)} (\S+)$", body, re.M)
    return float(found.group(1)) if found else -1.0


async def test_reaper_sealer_and_dispatcher_figures_reach_the_api_metrics(
    servers: Servers, logdir: Path, started: list[Service]
) -> None:
    """After a zone is created, the reaper's sealer chains its audit row (tail back to 0, a recent
    last success, rows counted) and the dispatcher's publish shows as a dispatched entry and no
    pending event: figures of other processes, read by whichever API worker answers."""
    env = service_env(await recreate_database(servers, "e2e_metrics"), servers.redis_url)
    api = start_service("api", {**env, "CARACAL_API_WORKERS": "2"}, logdir)
    started.extend([api, start_service("dispatcher", env, logdir), start_service("reaper", env, logdir)])
    await asyncio.to_thread(wait_ready, api)
    begun = time.time()
    before = await asyncio.to_thread(_scrape, api)
    status, _ = await asyncio.to_thread(call, api, "POST", "/v1/zones", {"name": "Measured"})
    assert status == 201

    async def settled() -> bool:
        body = await asyncio.to_thread(_scrape, api)
        sealed = _value(body, 'caracal_reaper_job_last_success_timestamp_seconds{job="audit-seal"}')
        return (
            _value(body, "caracal_audit_unsealed_rows") == 0
            and sealed >= begun
            and _value(body, 'caracal_reaper_job_rows_total{job="audit-seal"}')
            > _value(before, 'caracal_reaper_job_rows_total{job="audit-seal"}')
            and _value(body, "caracal_api_outbox_pending_total") == 0
            and _value(body, 'caracal_outbox_dispatched_total{stream="caracal.changes"}')
            > _value(before, 'caracal_outbox_dispatched_total{stream="caracal.changes"}')
        )

    await eventually(settled, "sealer, reaper and dispatcher figures in /metrics", within=15, poll=0.2)
    body = await asyncio.to_thread(_scrape, api)
    assert _value(body, 'caracal_reaper_job_last_success_timestamp_seconds{job="outbox-prune"}') > 0
    assert _value(body, "caracal_api_db_pool_connections") > 0
