"""What the Gateway reads (CONTRACT.md §5.5): gateway_resource_bindings and gateway_binding_revision.

Read here with the Gateway's own statements, not through the product's code: the bindings are
re-read whenever the revision's version changes, so every binding change must move it.
"""

from __future__ import annotations

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.api_helpers import make_application, make_provider, make_resource, make_zone

MANAGE = {"x-caracal-control-resource": "manage"}
Bindings = dict[tuple[str, str], str]  # (zone_id, resource_identifier) -> application_id


async def gateway_view(engine: AsyncEngine) -> tuple[int, Bindings]:
    """The revision, and every binding, as the Gateway's poll reads them."""
    async with engine.connect() as conn:
        version = (
            await conn.execute(text("SELECT version FROM gateway_binding_revision WHERE id = true"))
        ).scalar_one()
        rows = await conn.execute(
            text("SELECT resource_identifier, zone_id, application_id FROM gateway_resource_bindings")
        )
        return int(version), {(row.zone_id, row.resource_identifier): row.application_id for row in rows}


async def test_each_binding_change_bumps_the_revision_and_the_binding_follows_the_resource(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """Create binds; a new application rebinds; a new identifier moves the binding; delete unbinds;
    each bumps the version by one. A PATCH that touches neither keeps both as they are."""
    zone_id = (await make_zone(client, admin))["id"]
    first_app = await make_application(client, admin, zone_id)
    start, _ = await gateway_view(engine)
    resource_id = await make_resource(
        client, admin, zone_id, identifier="resource://orders", gateway_application_id=first_app
    )
    assert await gateway_view(engine) == (start + 1, {(zone_id, "resource://orders"): first_app})
    url = f"/v1/zones/{zone_id}/resources/{resource_id}"

    second_app = await make_application(client, admin, zone_id)
    assert (await client.patch(url, json={"gateway_application_id": second_app}, headers=admin)).is_success
    assert await gateway_view(engine) == (start + 2, {(zone_id, "resource://orders"): second_app})

    assert (await client.patch(url, json={"identifier": "resource://sales"}, headers=admin)).is_success
    assert await gateway_view(engine) == (start + 3, {(zone_id, "resource://sales"): second_app})

    assert (await client.patch(url, json={"name": "Sales", "scopes": ["s"]}, headers=admin)).is_success
    assert await gateway_view(engine) == (start + 3, {(zone_id, "resource://sales"): second_app})

    assert (await client.delete(url, headers=admin)).status_code == 204
    assert await gateway_view(engine) == (start + 4, {})


async def test_refused_changes_leave_the_gateways_view_untouched(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """A PATCH or POST that fails (conflict, missing application) changes neither bindings nor revision."""
    zone_id = (await make_zone(client, admin))["id"]
    resource_id = await make_resource(client, admin, zone_id, identifier="resource://a")
    await make_resource(client, admin, zone_id, identifier="resource://b")
    before = await gateway_view(engine)
    url = f"/v1/zones/{zone_id}/resources/{resource_id}"
    assert (await client.patch(url, json={"identifier": "resource://b"}, headers=admin)).status_code == 409
    assert (
        await client.patch(url, json={"gateway_application_id": "nope"}, headers=admin)
    ).status_code == 404
    refs = {
        "credential_provider_id": await make_provider(client, admin, zone_id),
        "gateway_application_id": await make_application(client, admin, zone_id),
    }
    before = await gateway_view(engine)  # the new application is not bound yet
    duplicate = await client.post(
        f"/v1/zones/{zone_id}/resources",
        json={"identifier": "resource://a", "scopes": ["x"], "upstream_url": "https://u", **refs},
        headers=admin,
    )
    assert duplicate.status_code == 409, duplicate.text
    assert await gateway_view(engine) == before


async def test_the_control_resource_is_never_bound(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """A control resource created with an application gets no binding; renaming a bound resource to
    the control identifier (with the header) removes its binding."""
    zone_id = (await make_zone(client, admin))["id"]
    app_id = await make_application(client, admin, zone_id)
    created = await client.post(
        f"/v1/zones/{zone_id}/resources",
        json={"identifier": "caracal-control", "scopes": ["c"], "gateway_application_id": app_id},
        headers={**admin, **MANAGE},
    )
    assert created.status_code == 201 and created.json()["gateway_application_id"] is None
    assert (await gateway_view(engine))[1] == {}
    other_zone = (await make_zone(client, admin, name="Other"))["id"]
    bound = await make_resource(client, admin, other_zone, identifier="resource://bound")
    start, bindings = await gateway_view(engine)
    assert list(bindings) == [(other_zone, "resource://bound")]
    renamed = await client.patch(
        f"/v1/zones/{other_zone}/resources/{bound}",
        json={"identifier": "caracal-control"},
        headers={**admin, **MANAGE},
    )
    assert renamed.status_code == 200 and renamed.json()["gateway_application_id"] is None
    assert await gateway_view(engine) == (start + 1, {})


async def test_zones_bind_the_same_identifier_to_their_own_applications(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """The binding key is (zone_id, resource_identifier): one zone's change leaves the other's binding."""
    zones = [(await make_zone(client, admin, name=name))["id"] for name in ("A", "B")]
    ids = [await make_resource(client, admin, zone, identifier="resource://shared") for zone in zones]
    _, bindings = await gateway_view(engine)
    assert set(bindings) == {(zone, "resource://shared") for zone in zones}
    assert (await client.delete(f"/v1/zones/{zones[0]}/resources/{ids[0]}", headers=admin)).status_code == 204
    kept = (zones[1], "resource://shared")
    assert (await gateway_view(engine))[1] == {kept: bindings[kept]}
