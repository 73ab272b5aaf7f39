"""Rows a grant needs (provider, resource, application, sessions), written with plain SQL so the grant
tests do not depend on those aggregates' routes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from caracal.ids import new_id
from tests.integration.api_helpers import make_zone


async def insert_provider(engine: AsyncEngine, zone_id: str, name: str = "Okta", kind: str = "none") -> str:
    provider_id = new_id()
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO providers (id, zone_id, name, identifier, provider_kind)"
                " VALUES (:id, :zone_id, :name, :identifier, :kind)"
            ),
            {
                "id": provider_id,
                "zone_id": zone_id,
                "name": name,
                "identifier": f"provider://{provider_id}",
                "kind": kind,
            },
        )
    return provider_id


async def insert_resource(
    engine: AsyncEngine, zone_id: str, provider_id: str, scopes: list[str], name: str = "Mail", **extra: Any
) -> str:
    resource_id = new_id()
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO resources"
                " (id, zone_id, name, identifier, credential_provider_id, scopes, archived_at)"
                " VALUES (:id, :zone_id, :name, :identifier, :provider_id, :scopes, :archived_at)"
            ),
            {
                "id": resource_id,
                "zone_id": zone_id,
                "name": name,
                "identifier": f"https://{resource_id}.example",
                "provider_id": provider_id,
                "scopes": scopes,
                "archived_at": extra.get("archived_at"),
            },
        )
    return resource_id


async def insert_application(engine: AsyncEngine, zone_id: str, name: str = "Agent", **extra: Any) -> str:
    application_id = new_id()
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO applications (id, zone_id, name, registration_method, expires_at, archived_at)"
                " VALUES (:id, :zone_id, :name, :method, :expires_at, :archived_at)"
            ),
            {
                "id": application_id,
                "zone_id": zone_id,
                "name": name,
                "method": extra.get("method", "managed"),
                "expires_at": extra.get("expires_at"),
                "archived_at": extra.get("archived_at"),
            },
        )
    return application_id


async def insert_sessions(
    engine: AsyncEngine, zone_id: str, subject_id: str | None, count: int, status: str = "active"
) -> list[str]:
    """`count` sessions of one subject, created one microsecond apart (oldest first in the list)."""
    ids = [new_id() for _ in range(count)]
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO sessions (id, zone_id, session_type, subject_id, status, expires_at,"
                " authenticated_at, claims_json, created_at)"
                " SELECT s.id, :zone_id, 'user', :subject_id, :status, now() + interval '1 hour', now(),"
                " CAST(:claims AS jsonb), now() - interval '1 hour' + s.n * interval '1 microsecond'"
                " FROM unnest(CAST(:ids AS text[])) WITH ORDINALITY AS s(id, n)"
            ),
            {
                "zone_id": zone_id,
                "subject_id": subject_id,
                "status": status,
                "ids": ids,
                "claims": json.dumps({}),
            },
        )
    return ids


@dataclass
class GrantWorld:
    """A zone with one provider, one resource (scopes mail:read, mail:send) and one application."""

    zone_id: str
    provider_id: str
    resource_id: str
    application_id: str

    def body(self, **overrides: Any) -> dict[str, Any]:
        return {
            "application_id": self.application_id,
            "user_id": "user-1",
            "resource_id": self.resource_id,
            "scopes": ["mail:read"],
            **overrides,
        }


async def grant_world(client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine) -> GrantWorld:
    zone_id = (await make_zone(client, admin))["id"]
    provider_id = await insert_provider(engine, zone_id)
    resource_id = await insert_resource(engine, zone_id, provider_id, ["mail:read", "mail:send"])
    application_id = await insert_application(engine, zone_id)
    return GrantWorld(zone_id, provider_id, resource_id, application_id)


async def post_grant(
    client: httpx.AsyncClient, admin: dict[str, str], zone_id: str, body: Any
) -> httpx.Response:
    return await client.post(f"/v1/zones/{zone_id}/grants", json=body, headers=admin)


async def made_grant(
    client: httpx.AsyncClient, admin: dict[str, str], world: GrantWorld, **body: Any
) -> dict[str, Any]:
    response = await post_grant(client, admin, world.zone_id, world.body(**body))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created
