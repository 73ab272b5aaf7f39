"""Providers over HTTP (CONTRACT.md §4.4): create, read, list, update, archive, with their error codes."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.api_helpers import (
    API_KEY_CONFIG,
    AUTHORIZATION_CODE_CONFIG,
    make_provider,
    make_zone,
    outbox,
)

PROVIDER_FIELDS = {
    "id",
    "zone_id",
    "name",
    "identifier",
    "kind",
    "config_json",
    "secret_config_keys",
    "created_at",
    "updated_at",
}


async def _post(client: httpx.AsyncClient, admin: dict[str, str], zone_id: str, body: Any) -> httpx.Response:
    return await client.post(f"/v1/zones/{zone_id}/providers", json=body, headers=admin)


async def _zone(client: httpx.AsyncClient, admin: dict[str, str]) -> str:
    return str((await make_zone(client, admin))["id"])


async def test_post_creates_an_api_key_provider_and_answers_its_public_part_only(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """201 with the provider object: the public config, the secret's name, never its value."""
    zone_id = await _zone(client, admin)
    response = await _post(
        client, admin, zone_id, {"name": "Stripe", "kind": "api_key", "config_json": API_KEY_CONFIG}
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == PROVIDER_FIELDS
    assert body["zone_id"] == zone_id
    assert (body["name"], body["identifier"], body["kind"]) == ("Stripe", "provider://stripe", "api_key")
    assert body["config_json"] == {"auth_location": "header", "header_name": "X-Api-Key"}
    assert body["secret_config_keys"] == ["api_key"]
    assert "ak-test-secret" not in response.text
    assert body["created_at"].endswith("Z") and len(body["created_at"]) == 24


async def test_get_one_and_list_answer_the_same_object(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    zone_id = await _zone(client, admin)
    provider_id = await make_provider(client, admin, zone_id, kind="oauth2_authorization_code")
    one = await client.get(f"/v1/zones/{zone_id}/providers/{provider_id}", headers=admin)
    assert one.status_code == 200, one.text
    listed = await client.get(f"/v1/zones/{zone_id}/providers", headers=admin)
    assert listed.status_code == 200
    assert listed.json() == [one.json()]
    assert one.json()["secret_config_keys"] == ["client_secret"]
    assert one.json()["config_json"]["client_auth_method"] == "client_secret_basic"
    assert AUTHORIZATION_CODE_CONFIG["client_secret"] not in one.text + listed.text


async def test_post_records_a_provider_created_change(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    zone_id = await _zone(client, admin)
    provider_id = await make_provider(client, admin, zone_id)
    changes = [payload for stream, payload in await outbox(engine) if stream == "caracal.changes"]
    assert {
        "event": "provider.created",
        "zone_id": zone_id,
        "entity_type": "provider",
        "entity_id": provider_id,
    }.items() <= changes[-1].items()
    async with engine.connect() as conn:
        count = (await conn.execute(text("SELECT count(*) FROM providers"))).scalar_one()
    assert count == 1
