"""POST …/provider-grants and …/revoke (CONTRACT.md §4.8): upsert, sealing, the order of errors."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from caracal_api.resources import Resources
from tests.integration.api_helpers import (
    AUTHORIZATION_CODE_CONFIG,
    make_provider,
    make_resource,
    make_zone,
    outbox,
    settle,
)
from tests.support import ZONE_KEK_HEX


@dataclass
class World:
    zone_id: str
    provider_id: str
    resource_id: str

    @property
    def base(self) -> str:
        return f"/v1/zones/{self.zone_id}/provider-grants"

    def body(self, **changes: Any) -> dict[str, Any]:
        return {
            "user_id": "user-1",
            "resource_id": self.resource_id,
            "provider_id": self.provider_id,
            "scopes": ["read"],
            "access_token": "at-Qm81-secret",
            "refresh_token": "rt-Zx42-secret",
            **changes,
        }


async def oauth_world(client: httpx.AsyncClient, admin: dict[str, str], **config: Any) -> World:
    zone_id = (await make_zone(client, admin))["id"]
    provider_id = await make_provider(
        client,
        admin,
        zone_id,
        kind="oauth2_authorization_code",
        config_json={**AUTHORIZATION_CODE_CONFIG, **config},
    )
    resource_id = await make_resource(client, admin, zone_id, credential_provider_id=provider_id)
    return World(zone_id, provider_id, resource_id)


@pytest_asyncio.fixture
async def world(client: httpx.AsyncClient, admin: dict[str, str]) -> World:
    return await oauth_world(client, admin)


def opened(sealed: bytes | None) -> str | None:
    """A token column opened as the STS does: nonce‖ciphertext‖tag, ChaCha20-Poly1305, ZONE_KEK, no AAD."""
    if sealed is None:
        return None
    return ChaCha20Poly1305(bytes.fromhex(ZONE_KEK_HEX)).decrypt(sealed[:12], sealed[12:], None).decode()


async def grant_rows(engine: AsyncEngine) -> list[Any]:
    async with engine.connect() as conn:
        found = await conn.execute(text("SELECT * FROM provider_grants ORDER BY created_at, id"))
        return list(found)


async def test_create_answers_201_and_seals_the_tokens_as_the_sts_opens_them(
    client: httpx.AsyncClient, admin: dict[str, str], world: World, engine: AsyncEngine
) -> None:
    body = world.body(expires_at="2030-01-02T03:04:05.678901Z")
    response = await client.post(world.base, json=body, headers=admin)
    assert response.status_code == 201, response.text
    grant = response.json()
    assert set(grant) >= {"id", "zone_id", "user_id", "resource_id", "provider_id", "scopes", "status"}
    assert (grant["zone_id"], grant["user_id"], grant["status"]) == (world.zone_id, "user-1", "active")
    assert (grant["resource_id"], grant["provider_id"], grant["scopes"]) == (
        world.resource_id,
        world.provider_id,
        ["read"],
    )
    assert grant["expires_at"] == "2030-01-02T03:04:05.678Z"
    assert grant["created_at"].endswith("Z") and grant["updated_at"].endswith("Z")
    assert "at-Qm81" not in response.text and "rt-Zx42" not in response.text
    [row] = await grant_rows(engine)
    assert (opened(row.access_token_ct), opened(row.refresh_token_ct)) == ("at-Qm81-secret", "rt-Zx42-secret")
    assert (row.refresh_token_version, row.refreshed_at) == (0, None)
    assert ("caracal.changes", {"event": "provider_grant.created", "zone_id": world.zone_id,
            "entity_type": "provider_grant", "entity_id": grant["id"]}) in await outbox(engine)  # fmt: skip


async def test_create_for_an_active_tuple_overwrites_it_and_keeps_its_id(
    client: httpx.AsyncClient, admin: dict[str, str], world: World, engine: AsyncEngine
) -> None:
    first = (await client.post(world.base, json=world.body(), headers=admin)).json()
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE provider_grants SET refreshed_at = now()"))
    again = await client.post(
        world.base,
        json={
            k: v
            for k, v in world.body(scopes=["read", "write"], access_token="at-2").items()
            if k != "refresh_token"
        },
        headers=admin,
    )
    assert again.status_code == 201, again.text
    assert again.json()["id"] == first["id"] and again.json()["scopes"] == ["read", "write"]
    assert again.json()["expires_at"] is None
    [row] = await grant_rows(engine)
    assert (opened(row.access_token_ct), row.refresh_token_ct) == ("at-2", None)
    assert (row.refresh_token_version, row.refreshed_at) == (1, None)
    events = [payload["event"] for stream, payload in await outbox(engine) if stream == "caracal.changes"]
    assert events[-2:] == ["provider_grant.created", "provider_grant.updated"]


async def test_concurrent_creates_for_one_tuple_leave_one_active_grant(
    client: httpx.AsyncClient, admin: dict[str, str], world: World, engine: AsyncEngine
) -> None:
    answers = await asyncio.gather(
        *(client.post(world.base, json=world.body(access_token=f"at-{n}"), headers=admin) for n in range(8))
    )
    assert [a.status_code for a in answers] == [201] * 8, [a.text for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1
    rows = await grant_rows(engine)
    assert len(rows) == 1 and rows[0].refresh_token_version == 7


async def test_another_user_gets_a_grant_of_their_own(
    client: httpx.AsyncClient, admin: dict[str, str], world: World
) -> None:
    one = (await client.post(world.base, json=world.body(), headers=admin)).json()
    two = (await client.post(world.base, json=world.body(user_id="user-2"), headers=admin)).json()
    assert one["id"] != two["id"]


async def test_unknown_body_keys_are_dropped(
    client: httpx.AsyncClient, admin: dict[str, str], world: World
) -> None:
    response = await client.post(world.base, json=world.body(status="revoked", colour="red"), headers=admin)
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "active"


@pytest.mark.parametrize(
    "change",
    [
        {"user_id": ""},
        {"resource_id": None},
        {"scopes": []},
        {"scopes": ["Read"]},
        {"scopes": [f"s{n}" for n in range(65)]},
        {"access_token": ""},
        {"refresh_token": ""},
        {"refresh_token": None},
        {"expires_at": "2030-01-02T03:04:05+02:00"},
        {"expires_at": "2030-02-30T00:00:00Z"},
        {"expires_at": "tomorrow"},
        {"access_token": 7},
    ],
)
async def test_a_bad_body_is_400_invalid_provider_grant(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    world: World,
    engine: AsyncEngine,
    change: dict[str, Any],
) -> None:
    response = await client.post(world.base, json=world.body(**change), headers=admin)
    assert (response.status_code, response.json()["error"]) == (400, "invalid_provider_grant"), response.text
    assert await grant_rows(engine) == []


async def test_missing_fields_are_400(client: httpx.AsyncClient, admin: dict[str, str], world: World) -> None:
    for field in ("user_id", "resource_id", "provider_id", "scopes", "access_token"):
        body = {k: v for k, v in world.body().items() if k != field}
        response = await client.post(world.base, json=body, headers=admin)
        assert response.json()["error"] == "invalid_provider_grant", field


async def test_errors_come_in_the_contracts_order(
    client: httpx.AsyncClient, admin: dict[str, str], world: World, engine: AsyncEngine
) -> None:
    """zone, body, provider, its kind, resource, their pairing, scopes: each beats the ones after it."""
    other_provider = await make_provider(client, admin, world.zone_id)  # api_key
    other_resource = await make_resource(client, admin, world.zone_id)  # its own provider
    cases = [
        ("/v1/zones/no-such-zone/provider-grants", {"user_id": ""}, 404, "zone_not_found"),
        (world.base, {"user_id": "", "provider_id": "nope"}, 400, "invalid_provider_grant"),
        (world.base, {"provider_id": "nope", "resource_id": "nope"}, 404, "provider_not_found"),
        (
            world.base,
            {"provider_id": other_provider, "resource_id": "nope"},
            400,
            "provider_grant_unsupported",
        ),
        (world.base, {"resource_id": "nope", "scopes": ["admin"]}, 404, "resource_not_found"),
        (world.base, {"resource_id": other_resource, "scopes": ["admin"]}, 400, "provider_resource_mismatch"),
        (world.base, {"scopes": ["read", "admin"]}, 403, "grant_scopes_exceed_resource"),
    ]
    for url, change, status, code in cases:
        response = await client.post(url, json=world.body(**change), headers=admin)
        assert (response.status_code, response.json()["error"]) == (status, code), (change, response.text)
    unsupported = await client.post(world.base, json=world.body(provider_id=other_provider), headers=admin)
    assert "oauth2_authorization_code" in unsupported.json()["detail"]
    assert await grant_rows(engine) == []


async def test_an_archived_zone_provider_or_resource_is_not_found(
    client: httpx.AsyncClient, admin: dict[str, str], world: World
) -> None:
    await client.delete(f"/v1/zones/{world.zone_id}/resources/{world.resource_id}", headers=admin)
    response = await client.post(world.base, json=world.body(), headers=admin)
    assert response.json()["error"] == "resource_not_found"
    await client.delete(f"/v1/zones/{world.zone_id}/providers/{world.provider_id}", headers=admin)
    response = await client.post(world.base, json=world.body(), headers=admin)
    assert response.json()["error"] == "provider_not_found"
    await client.delete(f"/v1/zones/{world.zone_id}", headers=admin)
    response = await client.post(world.base, json=world.body(), headers=admin)
    assert response.json()["error"] == "zone_not_found"


async def test_revoke_answers_the_revoked_grant_and_wipes_its_tokens(
    client: httpx.AsyncClient, admin: dict[str, str], world: World, engine: AsyncEngine
) -> None:
    created = (await client.post(world.base, json=world.body(), headers=admin)).json()
    tuple_body = {k: world.body()[k] for k in ("user_id", "resource_id", "provider_id")}
    response = await client.post(f"{world.base}/revoke", json=tuple_body, headers=admin)
    assert response.status_code == 200, response.text
    assert (response.json()["id"], response.json()["status"]) == (created["id"], "revoked")
    [row] = await grant_rows(engine)
    assert (row.status, row.access_token_ct, row.refresh_token_ct) == ("revoked", None, None)
    assert ("caracal.changes", {"event": "provider_grant.revoked", "zone_id": world.zone_id,
            "entity_type": "provider_grant", "entity_id": created["id"]}) in await outbox(engine)  # fmt: skip
    again = await client.post(f"{world.base}/revoke", json=tuple_body, headers=admin)
    assert (again.status_code, again.json()["error"]) == (404, "provider_grant_not_found")
    fresh = (await client.post(world.base, json=world.body(), headers=admin)).json()
    assert fresh["id"] != created["id"] and fresh["status"] == "active"
    assert len(await grant_rows(engine)) == 2


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"user_id": "u", "resource_id": "r"},
        {"user_id": "", "resource_id": "r", "provider_id": "p"},
        {"user_id": 1, "resource_id": "r", "provider_id": "p"},
    ],
)
async def test_a_bad_revoke_body_is_400_invalid_provider_grant_revoke(
    client: httpx.AsyncClient, admin: dict[str, str], world: World, body: dict[str, Any]
) -> None:
    response = await client.post(f"{world.base}/revoke", json=body, headers=admin)
    assert (response.status_code, response.json()["error"]) == (400, "invalid_provider_grant_revoke")


async def test_revoke_without_an_active_grant_is_404_and_another_zones_grant_is_untouched(
    client: httpx.AsyncClient, admin: dict[str, str], world: World, engine: AsyncEngine
) -> None:
    await client.post(world.base, json=world.body(), headers=admin)
    other_zone = (await make_zone(client, admin, name="Other"))["id"]
    tuple_body = {k: world.body()[k] for k in ("user_id", "resource_id", "provider_id")}
    response = await client.post(
        f"/v1/zones/{other_zone}/provider-grants/revoke", json=tuple_body, headers=admin
    )
    assert (response.status_code, response.json()["error"]) == (404, "provider_grant_not_found")
    [row] = await grant_rows(engine)
    assert row.status == "active"


async def test_no_response_or_log_line_holds_a_token(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    world: World,
    resources: Resources,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    texts = []
    for body in (world.body(), world.body(scopes=["nope"]), world.body(expires_at="bad")):
        texts.append((await client.post(world.base, json=body, headers=admin)).text)
    tuple_body = {k: world.body()[k] for k in ("user_id", "resource_id", "provider_id")}
    texts.append((await client.post(f"{world.base}/revoke", json=tuple_body, headers=admin)).text)
    await settle(resources)
    for shown in [*texts, caplog.text]:
        assert "at-Qm81" not in shown and "rt-Zx42" not in shown
