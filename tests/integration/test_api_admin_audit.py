"""GET /v1/zones/{zone_id}/admin-audit and GET /v1/admin-audit: filters, keyset pages, sealed state,
zone isolation, and no credential in what they show."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from caracal.audit_chain import seal_batch
from caracal.domain.audit import audit_row, insert_audit_rows
from caracal.domain.context import Actor, Caller
from caracal.settings import KeyRing
from tests.integration.api_helpers import bearer, make_token, make_zone

RING = KeyRing((("default", bytes.fromhex("6b" * 32)),))


async def _row(engine: AsyncEngine, occurred_at: str | None = None, **fields: Any) -> str:
    actor = Actor(fields.pop("actor_id", "tok-1"), "ops", "global", None, "write")
    row = audit_row(Caller(actor, "req-1"), **{"action": "POST /v1/x", "method": "POST", **fields})
    async with engine.begin() as conn:
        await insert_audit_rows(conn, [row])
        if occurred_at is not None:
            await conn.execute(
                text(
                    "UPDATE admin_audit_events SET occurred_at = CAST(CAST(:at AS text) AS timestamptz)"
                    " WHERE id = :id"
                ),
                {"at": occurred_at, "id": row["id"]},
            )
    return str(row["id"])


async def _ids(client: httpx.AsyncClient, admin: dict[str, str], url: str) -> list[str]:
    response = await client.get(url, headers=admin)
    assert response.status_code == 200, response.text
    return [row["id"] for row in response.json()]


async def test_zone_list_shows_the_zones_mutations_newest_first_and_their_sealed_state(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    zone_id = (await make_zone(client, admin))["id"]
    other = (await make_zone(client, admin, name="Other"))["id"]
    assert (
        await client.patch(f"/v1/zones/{zone_id}", json={"name": "Renamed"}, headers=admin)
    ).status_code == 200
    assert (
        await client.patch(f"/v1/zones/{other}", json={"name": "Elsewhere"}, headers=admin)
    ).status_code == 200
    rows = (await client.get(f"/v1/zones/{zone_id}/admin-audit", headers=admin)).json()
    assert [(r["method"], r["zone_id"], r["status_code"]) for r in rows] == [("PATCH", zone_id, 200)]
    assert rows[0]["sealed"] is False and rows[0]["chain_seq"] is None and rows[0]["sealed_at"] is None
    assert rows[0]["entity_type"] == "zones" and rows[0]["entity_id"] == zone_id
    async with engine.begin() as conn:
        await seal_batch(conn, RING)
    sealed = (await client.get(f"/v1/zones/{zone_id}/admin-audit", headers=admin)).json()[0]
    assert (
        sealed["sealed"] is True
        and isinstance(sealed["chain_seq"], int)
        and sealed["sealed_at"].endswith("Z")
    )
    assert not {"mac", "txid", "seq"} & set(sealed)


async def test_filters_by_actor_entity_method_and_time(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """since is inclusive, until exclusive; method is matched case-insensitively."""
    base = "/v1/zones/z1/admin-audit"
    early = await _row(engine, "2026-01-01T00:00:00Z", zone_id="z1", actor_id="alice")
    middle = await _row(engine, "2026-01-02T00:00:00Z", zone_id="z1", method="DELETE", entity_type="teams")
    late = await _row(engine, "2026-01-03T00:00:00Z", zone_id="z1", entity_type="teams", entity_id="t9")
    assert await _ids(client, admin, base) == [late, middle, early]
    assert await _ids(client, admin, f"{base}?actor_id=alice") == [early]
    assert await _ids(client, admin, f"{base}?method=delete") == [middle]
    assert await _ids(client, admin, f"{base}?entity_type=teams") == [late, middle]
    assert await _ids(client, admin, f"{base}?entity_type=teams&entity_id=t9") == [late]
    window = f"{base}?since=2026-01-02T00:00:00Z&until=2026-01-03T00:00:00Z"
    assert await _ids(client, admin, window) == [middle]
    assert await _ids(client, admin, f"{base}?since=2026-01-02T00:00:00%2B00:00") == [late, middle]


async def test_pages_follow_the_link_header_without_repeats(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    written = [await _row(engine, "2026-02-01T00:00:00Z", zone_id="z2") for _ in range(5)]
    seen: list[str] = []
    url: str | None = "/v1/zones/z2/admin-audit?method=POST&limit=2"
    while url is not None:
        response = await client.get(url, headers=admin)
        seen += [row["id"] for row in response.json()]
        link = response.headers.get("link")
        url = link[1 : link.index(">")] if link else None
        if url is not None:
            assert parse_qs(urlsplit(url).query)["method"] == ["POST"]
    assert sorted(seen) == sorted(written) and len(seen) == 5


async def test_global_list_shows_every_zone_and_none_and_narrows_by_zone(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    in_zone = await _row(engine, zone_id="z3")
    global_row = await _row(engine)
    assert set(await _ids(client, admin, "/v1/admin-audit")) >= {in_zone, global_row}
    assert await _ids(client, admin, "/v1/admin-audit?zone_id=z3") == [in_zone]


async def test_zone_token_gets_403_on_the_global_list_and_sees_only_its_zone(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    zone_id = (await make_zone(client, admin))["id"]
    await _row(engine, zone_id="elsewhere")
    mine = await _row(engine, zone_id=zone_id)
    token = bearer((await make_token(client, admin, scope="zone", zone_id=zone_id))["token"])
    refused = await client.get("/v1/admin-audit", headers=token)
    assert (refused.status_code, refused.json()["error"]) == (403, "admin_token_zone_mismatch")
    own = [r["id"] for r in (await client.get(f"/v1/zones/{zone_id}/admin-audit", headers=token)).json()]
    assert mine in own and all(r != "elsewhere" for r in own)


@pytest.mark.parametrize(
    "query",
    [
        "since=yesterday",
        "until=2026-01-01T00:00:00",
        "method=GE%20T",
        "actor_id=",
        "limit=0",
        "cursor=%21%21",
    ],
)
async def test_bad_filter_or_page_is_400(
    client: httpx.AsyncClient, admin: dict[str, str], query: str
) -> None:
    response = await client.get(f"/v1/admin-audit?{query}", headers=admin)
    assert response.status_code == 400
    assert response.json()["error"] in ("invalid_query", "invalid_cursor")


async def test_credentials_in_an_audited_query_are_shown_redacted(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """The OAuth callback's code and state are stored as sent (CONTRACT.md §7.5) but never shown."""
    url = "/v1/zones/z4/provider-grants/oauth/callback?code=SECRET1&State=SECRET2&x=1"
    await _row(engine, zone_id="z4", method="GET", path=url, action=f"GET {url}")
    row = (await client.get("/v1/zones/z4/admin-audit", headers=admin)).json()[0]
    assert "SECRET" not in row["path"] + row["action"]
    assert row["path"].endswith("?code=[redacted]&State=[redacted]&x=1")
