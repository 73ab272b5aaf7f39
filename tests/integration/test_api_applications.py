"""/v1/zones/{z}/applications against real Postgres and Redis: managed create, reads, PATCH, delete."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx

from tests.integration.api_helpers import make_application, make_zone

ISO_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
APP_KEYS = {"id", "zone_id", "name", "registration_method", "expires_at", "created_at"}
INTERNALS = {"x-caracal-application-internals": "control"}


def apps(zone_id: str) -> str:
    return f"/v1/zones/{zone_id}/applications"


async def create(
    client: httpx.AsyncClient, admin: dict[str, str], zone_id: str, **body: Any
) -> httpx.Response:
    payload = {"name": "App", "registration_method": "managed", **body}
    return await client.post(apps(zone_id), json=payload, headers=admin)


async def test_create_managed_application_answers_201_with_a_secret_once(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """POST answers the Application fields plus a 46-character cs_ secret; reads never show it again."""
    zone = await make_zone(client, admin)
    response = await create(client, admin, zone["id"], traits=["team:a"])
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {*APP_KEYS, "client_secret"}
    assert body["zone_id"] == zone["id"] and body["registration_method"] == "managed"
    assert body["expires_at"] is None and ISO_MS.match(body["created_at"])
    assert uuid.UUID(body["id"]).version == 7
    secret = body["client_secret"]
    assert len(secret) == 46 and re.fullmatch(r"cs_[A-Za-z0-9_-]{43}", secret)
    got = await client.get(f"{apps(zone['id'])}/{body['id']}", headers=admin)
    assert got.status_code == 200 and set(got.json()) == APP_KEYS
    with_traits = await client.get(f"{apps(zone['id'])}/{body['id']}", headers={**admin, **INTERNALS})
    assert with_traits.json()["traits"] == ["team:a"]
    assert await make_application(client, admin, zone["id"])
