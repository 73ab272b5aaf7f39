"""Every /v1 POST of the route table honours Idempotency-Key: the retry answers the first status and
bytes, flagged as replayed, and writes no row anywhere (so no second row, event or audit entry)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
from litestar.routes import HTTPRoute
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from caracal.db.engine import transaction
from caracal.db.tables import metadata
from caracal.outbox import record_event
from caracal_api.openapi import takes_idempotency_key
from caracal_api.resources import Resources
from tests.app_pool import route_table
from tests.integration.api_helpers import (
    ALLOW_READS,
    API_KEY_CONFIG,
    make_active_version,
    make_application,
    make_policy,
    make_policy_set,
    make_policy_version,
    make_provider,
    make_zone,
    settle,
)
from tests.integration.people_rows import make_challenge
from tests.integration.session_rows import insert_session
from tests.integration.test_api_provider_grants import oauth_world

Z = "/v1/zones/{zone_id}"


@dataclass
class World:
    client: httpx.AsyncClient
    admin: dict[str, str]
    engine: AsyncEngine
    zone_id: str

    def url(self, path: str, **ids: str) -> str:
        return path.format(zone_id=self.zone_id, **ids)


Call = tuple[str, Any]  # the concrete URL and its JSON body (None: no body)
Setup = Callable[[World], Awaitable[Call]]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def dead_event(w: World) -> str:
    async with transaction(w.engine) as conn:
        event_id = await record_event(conn, "caracal.test.dead", {"n": 1})
    async with w.engine.begin() as conn:
        await conn.execute(
            text("UPDATE event_outbox SET dead_at = now(), attempts = 100 WHERE id = :id"), {"id": event_id}
        )
    return event_id


async def grant_tuple(w: World) -> dict[str, str]:
    world = await oauth_world(w.client, w.admin)
    w.zone_id = world.zone_id
    return {"user_id": "user-1", "resource_id": world.resource_id, "provider_id": world.provider_id}


async def provider_grant(w: World) -> Call:
    named = await grant_tuple(w)  # in a zone of its own, with an OAuth provider
    body = {**named, "scopes": ["read"], "access_token": "at-secret", "refresh_token": "rt-secret"}
    return w.url(Z + "/provider-grants"), body


async def provider_grant_revoke(w: World) -> Call:
    url, body = await provider_grant(w)
    assert (await w.client.post(url, json=body, headers=w.admin)).status_code == 201
    return url + "/revoke", {k: body[k] for k in ("user_id", "resource_id", "provider_id")}


async def oauth_authorize(w: World) -> Call:
    named = await grant_tuple(w)
    return w.url(Z + "/provider-grants/oauth/authorize"), {**named, "scopes": ["read"]}


async def resource(w: World) -> Call:
    body = {
        "name": "Resource",
        "scopes": ["read"],
        "upstream_url": "https://upstream.example.com",
        "credential_provider_id": await make_provider(w.client, w.admin, w.zone_id),
        "gateway_application_id": await make_application(w.client, w.admin, w.zone_id),
    }
    return w.url(Z + "/resources"), body


async def grant(w: World) -> Call:
    _, made = await resource(w)
    made["name"] = unique("r")
    created = await w.client.post(w.url(Z + "/resources"), json=made, headers=w.admin)
    body = {
        "user_id": "user-1",
        "scopes": ["read"],
        "application_id": made["gateway_application_id"],
        "resource_id": created.json()["id"],
    }
    return w.url(Z + "/grants"), body


async def policy_set_version(w: World) -> Call:
    set_id = await make_policy_set(w.client, w.admin, w.zone_id)
    manifest = [{"policy_version_id": await make_policy_version(w.client, w.admin, w.zone_id)}]
    return w.url(Z + "/policy-sets/{s}/versions", s=set_id), {"manifest": manifest}


async def activation(w: World) -> Call:
    url, body = await policy_set_version(w)
    version = await w.client.post(url, json=body, headers=w.admin)
    return url.removesuffix("/versions") + "/activate", {"version_id": version.json()["id"]}


async def simulation(w: World) -> Call:
    set_id = await make_policy_set(w.client, w.admin, w.zone_id)
    version_id = await make_active_version(w.client, w.admin, w.zone_id)
    given = {
        "schema_version": "2026-05-20",
        "principal": {"zone_id": w.zone_id},
        "resource": {"id": "r"},
        "action": "read",
        "requested_scopes": ["read"],
        "context": {},
    }
    return w.url(Z + "/policy-sets/{s}/simulate", s=set_id), {"version_id": version_id, "input": given}


async def fixed(w: World, path: str, body: Any) -> Call:
    return w.url(path), body


def plain(path: str, body: Callable[[], Any]) -> Setup:
    return lambda w: fixed(w, path, body())


RFC7591 = {"client_name": "CLI", "grant_types": ["client_credentials"], "scope": "read"}
SETUPS: dict[str, Setup] = {
    "/v1/zones": plain("/v1/zones", lambda: {"name": "Z"}),
    "/v1/admin-tokens": plain("/v1/admin-tokens", lambda: {"name": "t", "scope": "global"}),
    "/v1/policies/validate": plain("/v1/policies/validate", lambda: {"content": ALLOW_READS}),
    "/v1/outbox/dead/requeue": lambda w: fixed(w, "/v1/outbox/dead/requeue", None),
    "/v1/outbox/{event_id}/requeue": lambda w: _then(dead_event(w), "/v1/outbox/{}/requeue", None),
    Z + "/applications": plain(Z + "/applications", lambda: {"name": "A", "registration_method": "managed"}),
    Z + "/applications/{application_id}/rotate-secret": lambda w: _then(
        make_application(w.client, w.admin, w.zone_id), w.url(Z + "/applications/{{}}/rotate-secret"), None
    ),
    Z + "/applications/dcr": plain(Z + "/applications/dcr", lambda: {"name": "agent"}),
    Z + "/applications/register": plain(Z + "/applications/register", lambda: RFC7591),
    Z + "/grants": grant,
    Z + "/invitations": plain(
        Z + "/invitations", lambda: {"email": "ada@example.com", "role": "admin", "invited_by": "root"}
    ),
    Z + "/policies": plain(Z + "/policies", lambda: {"name": unique("p"), "content": ALLOW_READS}),
    Z + "/policies/{policy_id}/versions": lambda w: _then(
        make_policy(w.client, w.admin, w.zone_id),
        w.url(Z + "/policies/{{}}/versions"),
        {"content": ALLOW_READS},
    ),
    Z + "/policy-sets": plain(Z + "/policy-sets", lambda: {"name": unique("s")}),
    Z + "/policy-sets/{policy_set_id}/versions": policy_set_version,
    Z + "/policy-sets/{policy_set_id}/simulate": simulation,
    Z + "/policy-sets/{policy_set_id}/activate": activation,
    Z + "/provider-grants": provider_grant,
    Z + "/provider-grants/revoke": provider_grant_revoke,
    Z + "/provider-grants/oauth/authorize": oauth_authorize,
    Z + "/providers": plain(
        Z + "/providers", lambda: {"name": "P", "kind": "api_key", "config_json": API_KEY_CONFIG}
    ),
    Z + "/resources": resource,
    Z + "/sessions/{session_id}/revoke": lambda w: _then(
        insert_session(w.engine, w.zone_id), w.url(Z + "/sessions/{{}}/revoke"), None
    ),
    Z + "/sessions/revoke": lambda w: _then(
        insert_session(w.engine, w.zone_id, subject_id="alice"),
        w.url(Z + "/sessions/revoke"),
        {"subject_id": "alice"},
    ),
    Z + "/step-up-challenges/{challenge_id}/satisfy": lambda w: _then(
        make_challenge(w.engine, w.zone_id),
        w.url(Z + "/step-up-challenges/{{}}/satisfy"),
        {"approver_subject_id": "approver"},
    ),
    Z + "/teams": plain(Z + "/teams", lambda: {"name": "T", "members": [{"id": "u1", "role": "owner"}]}),
}


async def _then(made: Awaitable[str], url: str, body: Any) -> Call:
    """A URL naming the object just made (its `{}`)."""
    return url.format(await made), body


def keyed_post_routes(resources: Resources) -> set[str]:
    app = route_table(resources)
    return {
        route.path_format.rstrip("/") or "/"
        for route in app.routes
        if isinstance(route, HTTPRoute)
        for handler in route.route_handlers
        if "POST" in handler.http_methods and takes_idempotency_key(handler, route.path)
    }


async def row_counts(engine: AsyncEngine) -> dict[str, int]:
    """Every table's row count, in one statement."""
    union = " UNION ALL ".join(f"SELECT '{t.name}', count(*) FROM {t.name}" for t in metadata.sorted_tables)
    async with engine.connect() as conn:
        return {name: int(n) for name, n in (await conn.execute(text(union))).all()}


async def test_every_post_route_has_a_setup_here(resources: Resources) -> None:
    assert keyed_post_routes(resources) == set(SETUPS)


async def test_every_post_route_replays_a_retry_and_writes_nothing_the_second_time(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine, resources: Resources
) -> None:
    for n, (path, setup) in enumerate(sorted(SETUPS.items())):
        world = World(client, admin, engine, (await make_zone(client, admin, dcr_enabled=True))["id"])
        url, body = await setup(world)
        headers = {**admin, "Idempotency-Key": f"route-{n}"}
        await settle(resources)
        before = await row_counts(engine)
        first = (
            await client.post(url, json=body, headers=headers)
            if body is not None
            else await client.post(url, headers=headers)
        )
        assert first.status_code < 300, (path, first.text)
        await settle(resources)
        after_first = await row_counts(engine)
        again = (
            await client.post(url, json=body, headers=headers)
            if body is not None
            else await client.post(url, headers=headers)
        )
        assert (again.status_code, again.content, again.headers.get("idempotent-replayed")) == (
            first.status_code,
            first.content,
            "true",
        ), path
        await settle(resources)
        assert await row_counts(engine) == after_first, path
        assert after_first["idempotency_keys"] == before["idempotency_keys"] + 1, path
        assert after_first["admin_audit_events"] == before["admin_audit_events"] + 1, path
