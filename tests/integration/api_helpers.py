"""What the API tests share: an app with changed settings, token and zone makers, table reads."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from caracal_api.resources import Resources
from tests.app_pool import bound_app


@asynccontextmanager
async def app_with(
    resources: Resources, peers: tuple[str, ...] = ("127.0.0.1",), **overrides: Any
) -> AsyncIterator[list[httpx.AsyncClient]]:
    """A fresh app over the same servers with some settings changed; one client per peer address."""
    res = Resources(
        settings=replace(resources.settings, **overrides),
        engine=resources.engine,
        redis=resources.redis,
        background=resources.background,
    )
    with bound_app(res) as app:
        clients = [
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app, client=(peer, 40000)), base_url="http://caracal.test"
            )
            for peer in peers
        ]
        try:
            yield clients
        finally:
            for http in clients:
                await http.aclose()
            await res.settled()
            await res.stop()


async def settle(resources: Resources) -> None:
    """Wait for the work spawned after responses (audit rows, last_used_at)."""
    await resources.settled()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def make_zone(client: httpx.AsyncClient, admin: dict[str, str], **body: Any) -> dict[str, Any]:
    response = await client.post("/v1/zones", json={"name": "Zone", **body}, headers=admin)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def make_token(client: httpx.AsyncClient, admin: dict[str, str], **body: Any) -> dict[str, Any]:
    response = await client.post(
        "/v1/admin-tokens", json={"name": "t", "scope": "global", **body}, headers=admin
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def make_application(
    client: httpx.AsyncClient, admin: dict[str, str], zone_id: str, **body: Any
) -> str:
    """A managed application in the zone; its id (its client secret is in the 201 only)."""
    response = await client.post(
        f"/v1/zones/{zone_id}/applications",
        json={"name": "App", "registration_method": "managed", **body},
        headers=admin,
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def outbox(engine: AsyncEngine) -> list[tuple[str, dict[str, Any]]]:
    """(stream, payload) of every event_outbox row, in insertion order."""
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT stream_name, payload_json FROM event_outbox ORDER BY seq"))
        return [(row.stream_name, row.payload_json) for row in rows]


async def count_rows(engine: AsyncEngine, table: str) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one())


API_KEY_CONFIG = {"auth_location": "header", "header_name": "X-Api-Key", "api_key": "ak-test-secret"}
AUTHORIZATION_CODE_CONFIG = {
    "authorization_endpoint": "https://idp.example.com/authorize",
    "token_endpoint": "https://idp.example.com/token",
    "redirect_uri": "https://caracal.example.com/callback",
    "client_id": "caracal-client",
    "allowed_token_hosts": ["idp.example.com"],
    "scopes": ["read"],
    "client_secret": "cs-test-secret",
}
PROVIDER_CONFIGS = {"api_key": API_KEY_CONFIG, "oauth2_authorization_code": AUTHORIZATION_CODE_CONFIG}


async def make_provider(
    client: httpx.AsyncClient, admin: dict[str, str], zone_id: str, **overrides: Any
) -> str:
    """A provider created through the API (kind `api_key` unless `kind=` says otherwise; a kind of
    PROVIDER_CONFIGS gets a valid config of its own unless `config_json=` is given); returns its id."""
    kind = overrides.pop("kind", "api_key")
    config = dict(PROVIDER_CONFIGS.get(kind, {}))
    body = {"name": "Provider", "kind": kind, "config_json": config, **overrides}
    response = await client.post(f"/v1/zones/{zone_id}/providers", json=body, headers=admin)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def make_resource(
    client: httpx.AsyncClient, admin: dict[str, str], zone_id: str, **overrides: Any
) -> str:
    """A resource the Gateway serves (its own provider and gateway application, made here unless the
    overrides name them); returns its id."""
    body = {"name": "Resource", "scopes": ["read", "write"], "upstream_url": "https://upstream.example.com"}
    body |= overrides
    if "credential_provider_id" not in body:
        body["credential_provider_id"] = await make_provider(client, admin, zone_id)
    if "gateway_application_id" not in body:
        body["gateway_application_id"] = await make_application(client, admin, zone_id)
    response = await client.post(f"/v1/zones/{zone_id}/resources", json=body, headers=admin)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def make_grant(client: httpx.AsyncClient, admin: dict[str, str], zone_id: str, **overrides: Any) -> str:
    """An active grant of a new application on a new resource (scope `read`) for `user-1`; its id."""
    body = {"user_id": "user-1", "scopes": ["read"], **overrides}
    if "application_id" not in body:
        body["application_id"] = await make_application(client, admin, zone_id)
    if "resource_id" not in body:
        body["resource_id"] = await make_resource(client, admin, zone_id)
    response = await client.post(f"/v1/zones/{zone_id}/grants", json=body, headers=admin)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


# A template-sized module: allows reads that ask for the read scope, denies everything else.
ALLOW_READS = """package caracal.authz

import rego.v1

default result := {"decision": "deny", "reason": "no rule allows it"}

result := {"decision": "allow", "reason": "reads are allowed"} if {
    input.action == "read"
    "read" in input.requested_scopes
}
"""


async def make_policy_version(
    client: httpx.AsyncClient, admin: dict[str, str], zone_id: str, content: str = ALLOW_READS, **body: Any
) -> str:
    """A new policy (named uniquely) holding `content`; the id of its version 1."""
    name = f"policy-{uuid.uuid4().hex[:12]}"
    response = await client.post(
        f"/v1/zones/{zone_id}/policies", json={"name": name, "content": content, **body}, headers=admin
    )
    assert response.status_code == 201, response.text
    return str(response.json()["version"]["id"])


async def make_policy(
    client: httpx.AsyncClient, admin: dict[str, str], zone_id: str, content: str = ALLOW_READS, **body: Any
) -> str:
    """A new policy (named uniquely) holding `content`; the policy's id."""
    name = f"policy-{uuid.uuid4().hex[:12]}"
    response = await client.post(
        f"/v1/zones/{zone_id}/policies", json={"name": name, "content": content, **body}, headers=admin
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def make_policy_set_version(
    client: httpx.AsyncClient, admin: dict[str, str], zone_id: str, set_id: str, *policy_version_ids: str
) -> str:
    """A version of the set over the given policy versions (a new ALLOW_READS policy when none)."""
    manifest = [{"policy_version_id": pid} for pid in policy_version_ids] or [
        {"policy_version_id": await make_policy_version(client, admin, zone_id)}
    ]
    url = f"/v1/zones/{zone_id}/policy-sets/{set_id}/versions"
    response = await client.post(url, json={"manifest": manifest}, headers=admin)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def make_policy_set(client: httpx.AsyncClient, admin: dict[str, str], zone_id: str, **body: Any) -> str:
    """A policy set with one version (over a new ALLOW_READS policy), activated; the set's id."""
    body = {"name": f"set-{uuid.uuid4().hex[:12]}", **body}
    response = await client.post(f"/v1/zones/{zone_id}/policy-sets", json=body, headers=admin)
    assert response.status_code == 201, response.text
    set_id = str(response.json()["id"])
    version_id = await make_policy_set_version(client, admin, zone_id, set_id)
    activated = await client.post(
        f"/v1/zones/{zone_id}/policy-sets/{set_id}/activate", json={"version_id": version_id}, headers=admin
    )
    assert activated.status_code == 202, activated.text
    return set_id


async def make_active_version(client: httpx.AsyncClient, admin: dict[str, str], zone_id: str) -> str:
    """The active version of the zone's newest policy set (made by make_policy_set when none), so
    routes naming both a set and a version find them together."""
    listed = await client.get(f"/v1/zones/{zone_id}/policy-sets?limit=1", headers=admin)
    assert listed.status_code == 200, listed.text
    if not listed.json() or listed.json()[0]["active_version_id"] is None:
        await make_policy_set(client, admin, zone_id)
        listed = await client.get(f"/v1/zones/{zone_id}/policy-sets?limit=1", headers=admin)
    return str(listed.json()[0]["active_version_id"])
