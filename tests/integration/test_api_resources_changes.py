"""/v1/zones/{z}/resources/{id} PATCH and DELETE, and the control resource: rules in the contract's order."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.api_helpers import make_application, make_provider, make_resource, make_zone, outbox

MANAGE = {"x-caracal-control-resource": "manage"}
CONTROL = "caracal-control"


def _error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    code: str = response.json()["error"]
    return code


async def _patch(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    zone_id: str,
    resource_id: str,
    body: Any,
    **headers: str,
) -> httpx.Response:
    url = f"/v1/zones/{zone_id}/resources/{resource_id}"
    return await client.patch(url, json=body, headers={**admin, **headers})


async def _get(client: httpx.AsyncClient, admin: dict[str, str], zone_id: str, resource_id: str) -> Any:
    response = await client.get(f"/v1/zones/{zone_id}/resources/{resource_id}", headers={**admin, **MANAGE})
    assert response.status_code == 200, response.text
    return response.json()


async def _control(client: httpx.AsyncClient, admin: dict[str, str], zone_id: str, **body: Any) -> Any:
    response = await client.post(
        f"/v1/zones/{zone_id}/resources",
        json={"identifier": CONTROL, "scopes": ["control"], **body},
        headers={**admin, **MANAGE},
    )
    assert response.status_code == 201, response.text
    return response.json()


async def _zone_with_resource(client: httpx.AsyncClient, admin: dict[str, str]) -> tuple[str, str]:
    zone_id = (await make_zone(client, admin))["id"]
    return zone_id, await make_resource(client, admin, zone_id, identifier="resource://orders")


async def test_patch_changes_given_fields_only_and_answers_the_full_object(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """Absent keys stay; arrays are replaced; updated_at moves; unknown keys are dropped; an event."""
    zone_id, resource_id = await _zone_with_resource(client, admin)
    before = await _get(client, admin, zone_id, resource_id)
    response = await _patch(
        client, admin, zone_id, resource_id, {"name": "Orders", "scopes": ["x"], "prefix": 1}
    )
    assert response.status_code == 200, response.text
    after = response.json()
    assert after == {**before, "name": "Orders", "scopes": ["x"], "updated_at": after["updated_at"]}
    assert after["updated_at"] > before["updated_at"]
    assert await _get(client, admin, zone_id, resource_id) == after
    assert ("caracal.changes", "resource.updated") in [(s, p.get("event")) for s, p in await outbox(engine)]


async def test_patch_of_only_the_gateway_application_rebinds(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """`gateway_application_id` alone is a change (no no_fields): the binding moves to the new application."""
    zone_id, resource_id = await _zone_with_resource(client, admin)
    new_app = await make_application(client, admin, zone_id)
    response = await _patch(client, admin, zone_id, resource_id, {"gateway_application_id": new_app})
    assert response.status_code == 200 and response.json()["gateway_application_id"] == new_app
    assert (await _get(client, admin, zone_id, resource_id))["gateway_application_id"] == new_app


@pytest.mark.parametrize("body", [{}, {"unknown": 1}])
async def test_patch_without_fields_is_400_no_fields(
    client: httpx.AsyncClient, admin: dict[str, str], body: dict[str, Any]
) -> None:
    zone_id, resource_id = await _zone_with_resource(client, admin)
    assert _error(await _patch(client, admin, zone_id, resource_id, body), 400) == "no_fields"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"upstream_url": None}, "upstream_url_required"),
        ({"gateway_application_id": None}, "gateway_application_required"),
        ({"credential_provider_id": None}, "credential_provider_required"),
        ({"credential_provider_id": ""}, "credential_provider_required"),
    ],
)
async def test_patch_checks_the_merged_resource_for_the_gateway_fields(
    client: httpx.AsyncClient, admin: dict[str, str], body: dict[str, Any], code: str
) -> None:
    """Clearing one of the three fields an ordinary resource needs is 400 with that field's code."""
    zone_id, resource_id = await _zone_with_resource(client, admin)
    assert _error(await _patch(client, admin, zone_id, resource_id, body), 400) == code


@pytest.mark.parametrize(
    "body",
    [
        {"scopes": []},
        {"name": ""},
        {"name": None},
        {"identifier": None},
        {"upstream_url": "not a url"},
        {"upstream_url": "ftp://files"},
        {"gateway_application_id": ""},
        {"scopes": "a"},
    ],
)
async def test_patch_body_errors_are_400_before_the_404(
    client: httpx.AsyncClient, admin: dict[str, str], body: dict[str, Any]
) -> None:
    """Body validation precedes the existence check: an unknown id with a bad body is 400 invalid_resource."""
    zone_id, resource_id = await _zone_with_resource(client, admin)
    assert _error(await _patch(client, admin, zone_id, "nope", body), 400) == "invalid_resource"
    assert _error(await _patch(client, admin, zone_id, resource_id, body), 400) == "invalid_resource"


async def test_patch_errors_come_in_the_contracts_order(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """provider_not_found < gateway_application_not_found < resource_not_found < invalid identifier <
    protected_resource < binding codes < no_fields < identifier conflict."""
    zone_id, resource_id = await _zone_with_resource(client, admin)
    other = await make_resource(client, admin, zone_id, identifier="resource://other")
    missing = {"credential_provider_id": "nope", "gateway_application_id": "nope"}
    assert _error(await _patch(client, admin, zone_id, "gone", missing), 404) == "provider_not_found"
    no_app = {"gateway_application_id": "nope"}
    assert (
        _error(await _patch(client, admin, zone_id, "gone", no_app), 404) == "gateway_application_not_found"
    )
    assert (
        _error(await _patch(client, admin, zone_id, "gone", {"identifier": "x"}), 404) == "resource_not_found"
    )
    bad_identifier = {"identifier": "orders", "upstream_url": None}
    assert _error(await _patch(client, admin, zone_id, resource_id, bad_identifier), 400) == (
        "invalid_resource_identifier"
    )
    to_control = {"identifier": CONTROL, "upstream_url": None}
    assert _error(await _patch(client, admin, zone_id, resource_id, to_control), 409) == "protected_resource"
    clash = {"identifier": "resource://other", "upstream_url": None}
    assert _error(await _patch(client, admin, zone_id, resource_id, clash), 400) == "upstream_url_required"
    taken = {"identifier": "resource://other"}
    assert (
        _error(await _patch(client, admin, zone_id, resource_id, taken), 409)
        == "resource_identifier_conflict"
    )
    assert (await _get(client, admin, zone_id, other))["identifier"] == "resource://other"


async def test_patch_provider_must_be_live_in_the_zone(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """A PATCH naming a missing or another zone's provider is 404 provider_not_found; a live one is taken."""
    zone_id, resource_id = await _zone_with_resource(client, admin)
    other_zone = (await make_zone(client, admin, name="Other"))["id"]
    for provider_id in ("nope", await make_provider(client, admin, other_zone)):
        body = {"credential_provider_id": provider_id}
        assert _error(await _patch(client, admin, zone_id, resource_id, body), 404) == "provider_not_found"
    fresh = await make_provider(client, admin, zone_id, name="Fresh")
    response = await _patch(client, admin, zone_id, resource_id, {"credential_provider_id": fresh})
    assert response.status_code == 200 and response.json()["credential_provider_id"] == fresh


async def test_patch_to_an_archived_resources_identifier_conflicts(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """An archived resource keeps its identifier: renaming another to it is 409."""
    zone_id, resource_id = await _zone_with_resource(client, admin)
    gone = await make_resource(client, admin, zone_id, identifier="resource://gone")
    assert (await client.delete(f"/v1/zones/{zone_id}/resources/{gone}", headers=admin)).status_code == 204
    body = {"identifier": "resource://gone"}
    assert (
        _error(await _patch(client, admin, zone_id, resource_id, body), 409) == "resource_identifier_conflict"
    )


async def test_delete_archives_and_then_answers_404(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """DELETE: 204, archived_at and updated_at set; gone from reads; a second DELETE is 404."""
    zone_id, resource_id = await _zone_with_resource(client, admin)
    url = f"/v1/zones/{zone_id}/resources/{resource_id}"
    assert (await client.delete(url, headers=admin)).status_code == 204
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT archived_at, updated_at FROM resources WHERE id = :id"), {"id": resource_id}
            )
        ).one()
    assert row.archived_at is not None and row.updated_at == row.archived_at
    assert _error(await client.get(url, headers=admin), 404) == "resource_not_found"
    assert _error(await client.delete(url, headers=admin), 404) == "resource_not_found"
    assert (
        _error(await _patch(client, admin, zone_id, resource_id, {"name": "x"}), 404) == "resource_not_found"
    )
    assert ("caracal.changes", "resource.deleted") in [(s, p.get("event")) for s, p in await outbox(engine)]


async def test_control_resource_without_a_provider_uses_the_zones_none_provider(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """With the manage header and no provider, provider-none-<zone> is upserted and used; a gateway
    application is never bound to the control resource."""
    zone_id = (await make_zone(client, admin))["id"]
    app_id = await make_application(client, admin, zone_id)
    created = await _control(client, admin, zone_id, gateway_application_id=app_id, credential_provider_id="")
    assert created["credential_provider_id"] == f"provider-none-{zone_id}"
    assert created["gateway_application_id"] is None and created["name"] == CONTROL
    async with engine.connect() as conn:
        provider = (
            await conn.execute(
                text("SELECT name, identifier, provider_kind, config_json FROM providers WHERE id = :id"),
                {"id": f"provider-none-{zone_id}"},
            )
        ).one()
        bindings = (await conn.execute(text("SELECT count(*) FROM gateway_resource_bindings"))).scalar_one()
    assert tuple(provider) == ("No credential", "provider://none", "none", {})
    assert bindings == 0


async def test_control_resource_is_protected_without_the_manage_header(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """POST or PATCH touching the control identifier without the header: 409 protected_resource + detail."""
    zone_id, resource_id = await _zone_with_resource(client, admin)
    create = await client.post(
        f"/v1/zones/{zone_id}/resources", json={"identifier": CONTROL, "scopes": ["a"]}, headers=admin
    )
    assert _error(create, 409) == "protected_resource" and create.json()["detail"]
    control = (await _control(client, admin, zone_id))["id"]
    assert _error(await _patch(client, admin, zone_id, control, {"name": "x"}), 409) == "protected_resource"
    moved = {"identifier": CONTROL}
    assert _error(await _patch(client, admin, zone_id, resource_id, moved), 409) == "protected_resource"
    response = await _patch(client, admin, zone_id, control, {"name": "Control", "scopes": ["c"]}, **MANAGE)
    assert response.status_code == 200 and response.json()["name"] == "Control"


async def test_patching_the_control_resource_provider_to_none_uses_the_none_provider(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    zone_id = (await make_zone(client, admin))["id"]
    provider_id = await make_provider(client, admin, zone_id)
    control = (await _control(client, admin, zone_id, credential_provider_id=provider_id))["id"]
    response = await _patch(client, admin, zone_id, control, {"credential_provider_id": None}, **MANAGE)
    assert response.status_code == 200, response.text
    assert response.json()["credential_provider_id"] == f"provider-none-{zone_id}"


async def test_control_resource_is_never_deleted(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    """DELETE of the control resource is 409 protected_resource, with or without the header."""
    zone_id = (await make_zone(client, admin))["id"]
    control = (await _control(client, admin, zone_id))["id"]
    url = f"/v1/zones/{zone_id}/resources/{control}"
    for headers in (admin, {**admin, **MANAGE}):
        assert _error(await client.delete(url, headers=headers), 409) == "protected_resource"
    assert (await _get(client, admin, zone_id, control))["identifier"] == CONTROL


async def test_a_control_resource_renamed_away_needs_the_gateway_fields(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """Leaving the control identifier (with the header) makes it ordinary: the binding rules apply."""
    zone_id = (await make_zone(client, admin))["id"]
    control = (await _control(client, admin, zone_id))["id"]
    body = {"identifier": "resource://ordinary"}
    assert (
        _error(await _patch(client, admin, zone_id, control, body, **MANAGE), 400) == "upstream_url_required"
    )
