"""/v1/admin-tokens (CONTRACT.md §4.15) and POST /v1/local/bootstrap (§4.16)."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from caracal_api.resources import Resources
from tests.integration.api_helpers import app_with, bearer, count_rows, make_token, make_zone, outbox

CREATED_KEYS = {"id", "name", "scope", "capability", "zone_id", "created_by", "created_at", "token"}
LISTED_KEYS = {
    "id",
    "name",
    "scope",
    "capability",
    "zone_id",
    "created_by",
    "created_at",
    "last_used_at",
    "revoked_at",
}


async def stored_digests(engine: AsyncEngine) -> dict[str, bytes]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT id, token_sha256 FROM admin_tokens"))
        return {row.id: bytes(row.token_sha256) for row in rows}


async def test_create_answers_the_cleartext_once_and_stores_only_its_sha256(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """POST answers 201 with the token; the table keeps its SHA-256 and the list never shows it."""
    response = await client.post("/v1/admin-tokens", json={"name": "ci", "scope": "global"}, headers=admin)
    assert response.status_code == 201
    created = response.json()
    assert set(created) == CREATED_KEYS
    assert (created["name"], created["scope"], created["capability"]) == ("ci", "global", "write")
    assert created["zone_id"] is None and created["created_by"] == "bootstrap"
    assert uuid.UUID(created["id"]).version == 7 and created["created_at"].endswith("Z")
    assert (await stored_digests(engine))[created["id"]] == hashlib.sha256(created["token"].encode()).digest()
    async with engine.connect() as conn:
        columns = (await conn.execute(text("SELECT * FROM admin_tokens"))).keys()
    assert not {"token", "token_hash"} & set(columns)
    listed = await client.get("/v1/admin-tokens", headers=admin)
    assert created["token"] not in listed.text
    assert all(set(row) == LISTED_KEYS for row in listed.json())
    assert {row["id"] for row in listed.json()} >= {created["id"]}
    assert (await client.get("/v1/zones", headers=bearer(created["token"]))).status_code == 200


async def test_zone_token_is_created_for_a_live_zone(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """scope zone with an existing zone_id answers 201 naming the zone and the capability asked for."""
    zone = await make_zone(client, admin)
    created = await make_token(client, admin, scope="zone", zone_id=zone["id"], capability="read")
    assert (created["scope"], created["zone_id"], created["capability"]) == ("zone", zone["id"], "read")


INVALID_REQUESTS: list[Any] = [
    {"name": "t", "scope": "global", "extra": 1},
    {"name": "", "scope": "global"},
    {"name": "x" * 121, "scope": "global"},
    {"scope": "global"},
    {"name": "t"},
    {"name": "t", "scope": "org"},
    {"name": "t", "scope": "global", "capability": "admin"},
    {"name": "t", "scope": "global", "capability": None},
    {"name": "t", "scope": "zone", "zone_id": ""},
    {"name": "t", "scope": "zone", "zone_id": None},
    {"name": "t", "scope": "global", "zone_id": None},
    {"name": "t", "scope": "zone", "zone_id": "z" * 129},
    {"name": 5, "scope": "global"},
    {"name": "t", "scope": ["global"]},
    [],
    "token",
    None,
]


@pytest.mark.parametrize("body", INVALID_REQUESTS)
async def test_invalid_request_is_400_invalid_admin_token_request(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine, body: Any
) -> None:
    """A body outside the strict schema answers 400 invalid_admin_token_request and mints nothing."""
    before = await count_rows(engine, "admin_tokens")
    response = await client.post("/v1/admin-tokens", json=body, headers=admin)
    assert (response.status_code, response.json()["error"]) == (400, "invalid_admin_token_request")
    assert await count_rows(engine, "admin_tokens") == before


async def test_malformed_json_is_400_invalid_admin_token_request(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """Bytes that are not JSON answer 400 invalid_admin_token_request."""
    headers = {**admin, "content-type": "application/json"}
    response = await client.post("/v1/admin-tokens", content=b'{"name": "t",', headers=headers)
    assert (response.status_code, response.json()["error"]) == (400, "invalid_admin_token_request")


async def test_scope_and_zone_id_must_agree(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """zone needs zone_id (400), global refuses one (400), an unknown or archived zone is 404."""
    zone, gone = await make_zone(client, admin), await make_zone(client, admin, name="Gone")
    await client.delete(f"/v1/zones/{gone['id']}", headers=admin)
    before = await outbox(engine)
    cases = [
        ({"scope": "zone"}, 400, "zone_id_required"),
        ({"scope": "global", "zone_id": zone["id"]}, 400, "zone_id_not_allowed_for_global"),
        ({"scope": "zone", "zone_id": str(uuid.uuid4())}, 404, "zone_not_found"),
        ({"scope": "zone", "zone_id": gone["id"]}, 404, "zone_not_found"),
    ]
    for body, status, code in cases:
        response = await client.post("/v1/admin-tokens", json={"name": "t", **body}, headers=admin)
        assert (response.status_code, response.json()["error"]) == (status, code), body
    assert await outbox(engine) == before


async def test_zone_tokens_cannot_manage_tokens(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    """Every /v1/admin-tokens route answers 403 admin_token_management_requires_global to a zone token."""
    zone = await make_zone(client, admin)
    own = await make_token(client, admin, scope="zone", zone_id=zone["id"])
    headers = bearer(own["token"])
    for response in (
        await client.get("/v1/admin-tokens", headers=headers),
        await client.post("/v1/admin-tokens", json={"name": "t", "scope": "global"}, headers=headers),
        await client.delete(f"/v1/admin-tokens/{own['id']}", headers=headers),
    ):
        assert (response.status_code, response.json()["error"]) == (
            403,
            "admin_token_management_requires_global",
        )


async def test_read_token_lists_but_cannot_mint(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    """A global read token may list tokens; minting answers 403 admin_token_read_only."""
    reader = bearer((await make_token(client, admin, capability="read"))["token"])
    assert (await client.get("/v1/admin-tokens", headers=reader)).status_code == 200
    response = await client.post("/v1/admin-tokens", json={"name": "t", "scope": "global"}, headers=reader)
    assert (response.status_code, response.json()["error"]) == (403, "admin_token_read_only")


async def test_revoke_answers_204_and_the_token_stops_working(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """DELETE answers 204, sets revoked_at, and the token then gets 401."""
    token = await make_token(client, admin)
    response = await client.delete(f"/v1/admin-tokens/{token['id']}", headers=admin)
    assert response.status_code == 204 and response.content == b""
    refused = await client.get("/v1/admin-tokens", headers=bearer(token["token"]))
    assert (refused.status_code, refused.json()["error"]) == (401, "invalid_admin_token")
    listed = {row["id"]: row for row in (await client.get("/v1/admin-tokens", headers=admin)).json()}
    assert listed[token["id"]]["revoked_at"] is not None


async def test_revoking_an_unknown_token_is_404(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    """DELETE of an id that names no token answers 404 admin_token_not_found."""
    response = await client.delete(f"/v1/admin-tokens/{uuid.uuid4()}", headers=admin)
    assert (response.status_code, response.json()["error"]) == (404, "admin_token_not_found")


@pytest.mark.parametrize("token_id", ["t" * 129, "a%20b", "a%2Cb"])
async def test_malformed_token_id_is_400_invalid_admin_token_id(
    client: httpx.AsyncClient, admin: dict[str, str], token_id: str
) -> None:
    """DELETE with an id outside the path-parameter pattern answers 400 invalid_admin_token_id."""
    response = await client.delete(f"/v1/admin-tokens/{token_id}", headers=admin)
    assert (response.status_code, response.json()["error"]) == (400, "invalid_admin_token_id")


async def test_create_and_revoke_each_write_one_changes_event(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """Minting and revoking add admin_token.created and admin_token.revoked rows to caracal.changes."""
    zone = await make_zone(client, admin)
    seen = len(await outbox(engine))
    token = await make_token(client, admin, scope="zone", zone_id=zone["id"])
    await client.delete(f"/v1/admin-tokens/{token['id']}", headers=admin)
    common = {"entity_type": "admin_token", "entity_id": token["id"], "zone_id": zone["id"]}
    assert (await outbox(engine))[seen:] == [
        ("caracal.changes", {"event": "admin_token.created", **common}),
        ("caracal.changes", {"event": "admin_token.revoked", **common}),
    ]


async def test_bootstrap_is_404_when_disabled(client: httpx.AsyncClient) -> None:
    """Without CARACAL_LOCAL_BOOTSTRAP_ENABLED the route answers 404."""
    response = await client.post("/v1/local/bootstrap")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("trust_proxy", [False, True])
async def test_bootstrap_answers_loopback_peers_only(
    resources: Resources, engine: AsyncEngine, trust_proxy: bool
) -> None:
    """A non-loopback socket peer gets 403 bootstrap_loopback_only, whatever X-Forwarded-For says."""
    async with app_with(
        resources, peers=("10.1.2.3",), local_bootstrap_enabled=True, trust_proxy=trust_proxy
    ) as (remote,):
        for headers in ({}, {"X-Forwarded-For": "127.0.0.1"}):
            response = await remote.post("/v1/local/bootstrap", headers=headers)
            assert (response.status_code, response.json()["error"]) == (403, "bootstrap_loopback_only")
    assert await count_rows(engine, "admin_tokens") == 0


@pytest.mark.parametrize("peer", ["127.0.0.1", "127.9.8.7", "::1"])
async def test_bootstrap_mints_one_global_token_then_answers_409(
    resources: Resources, engine: AsyncEngine, peer: str
) -> None:
    """On an empty table a tokenless loopback call gets 201 and a working global token; then 409."""
    async with app_with(resources, peers=(peer,), local_bootstrap_enabled=True) as (local,):
        first = await local.post("/v1/local/bootstrap", headers=bearer("junk"))
        assert first.status_code == 201, first.text
        body = first.json()
        assert set(body) == CREATED_KEYS and (body["scope"], body["zone_id"]) == ("global", None)
        minted = bearer(body["token"])
        assert (await local.get("/v1/zones", headers=minted)).status_code == 200
        assert (await local.post("/v1/zones", json={"name": "x"}, headers=minted)).status_code == 201
        again = await local.post("/v1/local/bootstrap")
        assert (again.status_code, again.json()["error"]) == (409, "bootstrap_already_done")
    assert list(await stored_digests(engine)) == [body["id"]]
    assert (await outbox(engine))[0][1]["event"] == "admin_token.created"


async def test_bootstrap_is_409_once_the_env_token_exists(
    client: httpx.AsyncClient, resources: Resources
) -> None:
    """A seeded CARACAL_ADMIN_TOKEN counts as the first global token."""
    async with app_with(resources, local_bootstrap_enabled=True) as (local,):
        response = await local.post("/v1/local/bootstrap")
        assert (response.status_code, response.json()["error"]) == (409, "bootstrap_already_done")


async def test_concurrent_bootstraps_mint_exactly_one_token(
    resources: Resources, engine: AsyncEngine
) -> None:
    """Eight simultaneous bootstrap calls: one 201, seven 409, one row."""
    async with app_with(resources, local_bootstrap_enabled=True) as (local,):
        responses = await asyncio.gather(*(local.post("/v1/local/bootstrap") for _ in range(8)))
    assert sorted(r.status_code for r in responses) == [201] + [409] * 7
    assert await count_rows(engine, "admin_tokens") == 1


async def test_revoking_a_revoked_token_again_is_404(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """A second DELETE finds no live token: 404 admin_token_not_found, and no second event."""
    token = await make_token(client, admin)
    assert (await client.delete(f"/v1/admin-tokens/{token['id']}", headers=admin)).status_code == 204
    again = await client.delete(f"/v1/admin-tokens/{token['id']}", headers=admin)
    assert (again.status_code, again.json()["error"]) == (404, "admin_token_not_found")


async def test_bootstrap_mints_when_only_a_read_global_token_exists(
    resources: Resources, engine: AsyncEngine
) -> None:
    """A global read token cannot manage anything, so bootstrap still mints the first write token."""
    async with engine.begin() as conn:
        await conn.execute(text("DELETE FROM admin_tokens"))
        await conn.execute(
            text(
                "INSERT INTO admin_tokens (id, name, token_sha256, scope, capability, created_by) "
                "VALUES ('ro', 'ro', :d, 'global', 'read', 'test')"
            ),
            {"d": hashlib.sha256(b"cat_read_only_token_value").digest()},
        )
    async with app_with(resources, local_bootstrap_enabled=True) as (http,):
        response = await http.post("/v1/local/bootstrap")
    assert response.status_code == 201
    assert response.json()["capability"] == "write"
