"""Keyset pagination of lists, /health, /ready, /metrics, OpenAPI and the admin audit trail."""

from __future__ import annotations

import base64
import json
import re
from datetime import datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from caracal.ids import new_id
from caracal_api.resources import Resources
from tests.integration.api_helpers import app_with, settle

NEXT = re.compile(r'^<(?P<url>[^>]+)>; rel="next"$')


async def insert_zones(engine: AsyncEngine, created_at: list[str]) -> list[str]:
    """Zones written straight to the table, one per timestamp (duplicates allowed)."""
    ids = [new_id() for _ in created_at]
    async with engine.begin() as conn:
        for zone_id, ts in zip(ids, created_at, strict=True):
            await conn.execute(
                text(
                    "INSERT INTO zones (id, name, slug, dek_ciphertext, created_at, updated_at)"
                    " VALUES (:id, 'Raw', :id, '\\x00'::bytea, :ts, :ts)"
                ),
                {"id": zone_id, "ts": datetime.fromisoformat(ts)},
            )
    return ids


async def listed_in_order(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        query = text("SELECT id FROM zones WHERE archived_at IS NULL ORDER BY created_at DESC, id DESC")
        return list((await conn.execute(query)).scalars())


async def walk(client: httpx.AsyncClient, admin: dict[str, str], url: str) -> list[str]:
    """Every id of every page, following Link headers until a page has none."""
    seen: list[str] = []
    for _ in range(100):
        response = await client.get(url, headers=admin)
        assert response.status_code == 200, response.text
        seen += [zone["id"] for zone in response.json()]
        link = response.headers.get("link")
        if link is None:
            return seen
        match = NEXT.match(link)
        assert match, link
        url = match["url"]
    raise AssertionError("paging did not end")


@pytest.mark.parametrize("limit", ["0", "501", "x", "-1", "1.5", "", "²", "9" * 5000])
async def test_limit_outside_1_to_500_is_400_invalid_query(
    client: httpx.AsyncClient, admin: dict[str, str], limit: str
) -> None:
    """limit must be an integer from 1 to 500, else 400 invalid_query."""
    response = await client.get("/v1/zones", params={"limit": limit}, headers=admin)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_query"


def cursor_of(payload: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()


@pytest.mark.parametrize(
    "cursor",
    [
        "!!!",
        "bm90IGpzb24",
        cursor_of({}),
        cursor_of([1, 2]),
        cursor_of({"ts": "", "id": "x"}),
        cursor_of({"ts": "2026-01-01T00:00:00.000Z", "id": ""}),
        cursor_of({"ts": "yesterday", "id": "x"}),
        cursor_of({"ts": "2026-01-01T00:00:00", "id": "x"}),
        cursor_of({"ts": 5, "id": "x"}),
        cursor_of({"ts": "2026-01-01T00:00:00.000Z", "id": "a\u0000b"}),
        cursor_of({"ts": "0001-01-01T00:00:00+14:00", "id": "x"}),
    ],
)
async def test_undecodable_cursor_is_400_invalid_cursor(
    client: httpx.AsyncClient, admin: dict[str, str], cursor: str
) -> None:
    """A cursor this API did not issue answers 400 invalid_cursor."""
    response = await client.get("/v1/zones", params={"cursor": cursor}, headers=admin)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_cursor"


@pytest.mark.parametrize("cursor", ["", "a" * 513])
async def test_cursor_of_wrong_length_is_400_invalid_query(
    client: httpx.AsyncClient, admin: dict[str, str], cursor: str
) -> None:
    """cursor must have 1..512 characters, else 400 invalid_query."""
    response = await client.get("/v1/zones", params={"cursor": cursor}, headers=admin)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_query"


async def test_default_page_is_200_rows_with_a_next_link(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """Without limit a page holds 200 rows; a full page links the next with limit=200, cursor last."""
    await insert_zones(engine, [f"2026-01-01T00:00:{n // 100:02d}.{n % 100:02d}0000Z" for n in range(201)])
    response = await client.get("/v1/zones", headers=admin)
    assert len(response.json()) == 200
    assert re.fullmatch(r'</v1/zones\?limit=200&cursor=[A-Za-z0-9_-]+>; rel="next"', response.headers["link"])
    assert len((await client.get("/v1/zones?limit=500", headers=admin)).json()) == 201


async def test_link_keeps_the_query_in_order_and_appears_only_on_full_pages(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """Link repeats the query in order, sets limit, puts cursor last; a short page has no Link."""
    ids = await insert_zones(engine, ["2026-01-01T00:00:01Z", "2026-01-01T00:00:02Z", "2026-01-01T00:00:03Z"])
    first = await client.get("/v1/zones?foo=1&limit=2&bar=b%20c", headers=admin)
    assert [z["id"] for z in first.json()] == ids[:0:-1]
    match = re.fullmatch(
        r'</v1/zones\?foo=1&limit=2&bar=b%20c&cursor=(?P<c>[A-Za-z0-9_-]+)>; rel="next"',
        first.headers["link"],
    )
    assert match
    decoded = json.loads(base64.urlsafe_b64decode(match["c"] + "=" * (-len(match["c"]) % 4)))
    assert set(decoded) == {"ts", "id"} and decoded["id"] == ids[1]
    second = await client.get(f"/v1/zones?limit=2&cursor={match['c']}", headers=admin)
    assert [z["id"] for z in second.json()] == [ids[0]]
    assert "link" not in second.headers
    assert "link" in (await client.get("/v1/zones?limit=3", headers=admin)).headers
    assert "link" not in (await client.get("/v1/zones?limit=4", headers=admin)).headers


@pytest.mark.parametrize("limit", [1, 2, 3, 4])
async def test_paging_returns_every_zone_once_even_within_one_millisecond(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine, limit: int
) -> None:
    """Keyset paging (created_at DESC, id DESC) neither skips nor repeats rows sharing a millisecond."""
    same = "2026-03-01T10:00:00.123456Z"
    await insert_zones(
        engine, [same, same, same, same, "2026-03-01T10:00:00.123999Z", "2026-03-01T10:00:00.123001Z"]
    )
    for name in ("a", "b", "c"):
        assert (await client.post("/v1/zones", json={"name": name}, headers=admin)).status_code == 201
    seen = await walk(client, admin, f"/v1/zones?limit={limit}")
    assert seen == await listed_in_order(engine)
    assert len(seen) == len(set(seen)) == 9


async def test_health_answers_ok(client: httpx.AsyncClient) -> None:
    """GET /health needs no token and answers {"ok": true}."""
    response = await client.get("/health")
    assert (response.status_code, response.json()) == (200, {"ok": True})


async def test_ready_answers_ok_when_postgres_and_redis_answer(client: httpx.AsyncClient) -> None:
    """GET /ready answers 200 {"ok": true} with migrated Postgres and live Redis."""
    response = await client.get("/ready")
    assert (response.status_code, response.json()) == (200, {"ok": True})


async def test_metrics_is_prometheus_text_with_outbox_gauges(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """/metrics answers Prometheus text; pending counts the undispatched outbox rows."""
    await client.post("/v1/zones", json={"name": "Acme"}, headers=admin)
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    body = response.text
    for name in (
        "caracal_api_outbox_pending_total",
        "caracal_api_outbox_dead_total",
        "caracal_api_outbox_oldest_pending_age_seconds",
        "caracal_api_outbox_oldest_dead_age_seconds",
    ):
        assert f"# TYPE {name} gauge" in body
    assert re.search(r"^caracal_api_outbox_pending_total 2$", body, re.M)
    posted = r'^caracal_api_http_requests_total\{method="POST",[^}]*status="201"\} 1(\.0)?$'
    assert re.search(posted, body, re.M)


async def test_metrics_requires_the_configured_bearer(resources: Resources) -> None:
    """With METRICS_BEARER set, /metrics answers 401 {"error":"unauthorized"} without exactly that bearer."""
    async with app_with(resources, metrics_bearer="s3cret") as (http,):
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "bearer s3cret"}):
            response = await http.get("/metrics", headers=headers)
            assert response.status_code == 401
            assert response.json() == {"error": "unauthorized"}
        allowed = await http.get("/metrics", headers={"Authorization": "Bearer s3cret"})
        assert allowed.status_code == 200 and "caracal_api_outbox_pending_total" in allowed.text


async def test_openapi_lists_the_v1_routes(client: httpx.AsyncClient) -> None:
    """/openapi.json documents zones, admin tokens, dead letters and bootstrap."""
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    for path in (
        "/v1/zones",
        "/v1/zones/{zone_id}",
        "/v1/admin-tokens",
        "/v1/outbox/dead",
        "/v1/local/bootstrap",
    ):
        assert path in paths, sorted(paths)


async def test_docs_answer_html(client: httpx.AsyncClient) -> None:
    """/docs serves a browsable HTML page."""
    response = await client.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "<html" in response.text.lower()


async def audit_rows(resources: Resources) -> list[Any]:
    await settle(resources)
    async with resources.engine.connect() as conn:
        query = text("SELECT * FROM admin_audit_events ORDER BY occurred_at, id")
        return list((await conn.execute(query)).all())


async def test_mutations_and_failures_are_audited_after_the_response(
    client: httpx.AsyncClient, admin: dict[str, str], resources: Resources
) -> None:
    """POST /v1/zones and failed GETs leave audit rows: actor, status, URL as sent, request id."""
    created = await client.post("/v1/zones", json={"name": "Acme"}, headers=admin)
    zone_id = created.json()["id"]
    await client.get(f"/v1/zones/{zone_id}", headers=admin)
    missing = await client.get("/v1/zones/nope?x=1", headers=admin)
    await client.get("/v1/zones/a%00b", headers=admin)
    rows = await audit_rows(resources)
    assert [(r.action, r.status_code) for r in rows] == [
        ("POST /v1/zones", 201),
        ("GET /v1/zones/nope?x=1", 404),
        ("GET /v1/zones/a%00b", 400),
    ]
    post, failed, _ = rows
    assert (post.method, post.path, post.actor_name, post.actor_scope) == (
        "POST",
        "/v1/zones",
        "bootstrap",
        "global",
    )
    assert post.request_id == created.headers["x-request-id"]
    assert post.payload_json["rls_mode"] == "control_plane_wildcard"
    assert (failed.zone_id, failed.entity_type, failed.entity_id) == ("nope", "zones", "nope")
    assert failed.request_id == missing.headers["x-request-id"]


async def test_unauthenticated_failures_write_no_audit_row(
    client: httpx.AsyncClient, admin: dict[str, str], resources: Resources
) -> None:
    """A 401 writes nothing (a flood of bad tokens must not fill the table); an authenticated 404 does."""
    assert (await client.delete("/v1/zones/abc")).status_code == 401
    assert (await client.delete("/v1/zones/abc", headers=admin)).status_code == 404
    rows = await audit_rows(resources)
    assert [(r.action, r.status_code, r.actor_name) for r in rows] == [
        ("DELETE /v1/zones/abc", 404, "bootstrap")
    ]
