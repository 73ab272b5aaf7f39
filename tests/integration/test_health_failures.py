"""/ready tells a bug from an unreachable database; /metrics keeps client-chosen labels bounded."""

from __future__ import annotations

import logging
import re

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from caracal_api.metrics import HttpMetrics
from caracal_api.resources import Resources
from tests.integration.api_helpers import app_with


async def test_ready_logs_a_failing_query_with_its_traceback_instead_of_calling_postgres_unreachable(
    client: httpx.AsyncClient, engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    """A /ready query that fails for a reason other than the connection is a logged 500, not 503."""
    assert (await client.get("/ready")).status_code == 200
    async with engine.begin() as conn:
        await conn.execute(text("ALTER TABLE event_outbox RENAME TO event_outbox_hidden"))
    try:
        with caplog.at_level(logging.ERROR):
            response = await client.get("/ready")
    finally:
        async with engine.begin() as conn:
            await conn.execute(text("ALTER TABLE event_outbox_hidden RENAME TO event_outbox"))
    assert response.status_code == 500
    assert response.json()["error"] == "internal_error"
    failures = [r for r in caplog.records if r.exc_info and "/ready" in r.getMessage()]
    assert failures, [r.getMessage() for r in caplog.records]
    assert "event_outbox" in str(failures[0].exc_info[1])  # type: ignore[index]


async def test_request_with_a_made_up_method_adds_no_metrics_label(client: httpx.AsyncClient) -> None:
    """Methods outside HTTP's own are counted under method="other", whatever the client invents."""
    for invented in ("BREW", "XYZZY1", "XYZZY2"):
        await client.request(invented, "/health")
    body = (await client.get("/metrics")).text
    methods = set(re.findall(r'^caracal_api_http_requests_total\{method="([^"]*)"', body, re.M))
    assert methods <= {"GET", "other"}, methods
    assert re.search(r'^caracal_api_http_requests_total\{method="other",[^}]*\} 3(\.0)?$', body, re.M), body


def test_http_metrics_keep_known_methods_and_fold_the_rest() -> None:
    """GET, POST, PATCH… keep their label; anything else becomes "other" (bounded label set)."""
    metrics = HttpMetrics()
    for method in ("GET", "PATCH", "get", "FOO", "A" * 1000):
        metrics.observe(method, "/health", 200, 0.001)
    rendered = "\n".join(metrics.render())
    labels = set(re.findall(r'^caracal_api_http_requests_total\{method="([^"]*)"', rendered, re.M))
    assert sorted(labels) == ["GET", "PATCH", "other"]


async def test_metrics_bearer_with_non_ascii_characters_is_refused_not_crashed(resources: Resources) -> None:
    """The bearer is compared as bytes in constant time: any header value is a 401, never a 500."""
    async with app_with(resources, metrics_bearer="s3cret") as (http,):
        refused = await http.get("/metrics", headers={"Authorization": "Bearer s3cr\u00e9t".encode()})
        assert (refused.status_code, refused.json()) == (401, {"error": "unauthorized"})
        assert (await http.get("/metrics", headers={"Authorization": "Bearer s3cret"})).status_code == 200
