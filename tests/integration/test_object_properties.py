"""OWASP API3 (object property level authorization): a client cannot set the properties the server
owns (id, zone, timestamps, stored secrets) by naming them in a body, on create or on update."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.api_helpers import make_application, make_zone

SERVER_OWNED: dict[str, Any] = {
    "id": "app_chosen_by_the_client",
    "created_at": "2000-01-01T00:00:00.000Z",
    "archived_at": "2000-01-01T00:00:00.000Z",
    "client_secret_hash": "argon2id$c2FsdA$aGFzaA",
    "client_secret": "sk-chosen-by-the-client",
}


async def _rows(engine: AsyncEngine) -> list[Any]:
    async with engine.connect() as conn:
        return list(await conn.execute(text("SELECT * FROM applications ORDER BY id")))


async def test_server_owned_application_properties_in_a_body_are_400_and_change_nothing(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """Naming the zone, the id, a time or a secret in a create or an update is refused (the route's
    strict body), so no row moves zone or takes a hash the client chose."""
    zone_id, other_zone = (await make_zone(client, admin))["id"], (await make_zone(client, admin))["id"]
    app_id = await make_application(client, admin, zone_id)
    before = await _rows(engine)
    for name, value in {"zone_id": other_zone, **SERVER_OWNED}.items():
        body = {"name": "App", "registration_method": "managed", name: value}
        created = await client.post(f"/v1/zones/{zone_id}/applications", json=body, headers=admin)
        assert (created.status_code, created.json()["error"]) == (400, "invalid_application"), name
        if name == "client_secret":
            continue  # PATCH may set a secret the caller chose (CONTRACT.md §4.2): hashed, never shown
        patched = await client.patch(
            f"/v1/zones/{zone_id}/applications/{app_id}", json={"name": "Renamed", name: value}, headers=admin
        )
        assert patched.status_code == 400, (name, patched.text)
    assert await _rows(engine) == before
    assert [row.zone_id for row in before] == [zone_id]
