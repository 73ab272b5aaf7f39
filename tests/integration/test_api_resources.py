"""/v1/zones/{z}/resources POST, GET and list: identifiers, field rules, references, quota, conflicts."""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from caracal_api.resources import Resources
from tests.integration.api_helpers import (
    app_with,
    make_application,
    make_provider,
    make_resource,
    make_zone,
    outbox,
)

ISO_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
RESOURCE_KEYS = {
    "id",
    "zone_id",
    "name",
    "identifier",
    "upstream_url",
    "scopes",
    "credential_provider_id",
    "gateway_application_id",
    "created_at",
    "updated_at",
}
UPSTREAM = "https://upstream.example.com/api"
MANAGE = {"x-caracal-control-resource": "manage"}


async def _served(client: httpx.AsyncClient, admin: dict[str, str], zone_id: str) -> dict[str, Any]:
    """The three references an ordinary resource needs, made in the zone."""
    return {
        "upstream_url": UPSTREAM,
        "credential_provider_id": await make_provider(client, admin, zone_id),
        "gateway_application_id": await make_application(client, admin, zone_id),
    }


async def _post(
    client: httpx.AsyncClient, admin: dict[str, str], zone_id: str, body: dict[str, Any], **headers: str
) -> httpx.Response:
    return await client.post(f"/v1/zones/{zone_id}/resources", json=body, headers={**admin, **headers})


async def _world(client: httpx.AsyncClient, admin: dict[str, str]) -> tuple[str, dict[str, Any]]:
    zone_id = (await make_zone(client, admin))["id"]
    return zone_id, await _served(client, admin, zone_id)


def _error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    code: str = response.json()["error"]
    return code


async def test_create_answers_201_with_the_contract_fields_and_defaults_the_name(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """POST answers the Resource object: ten keys, UUIDv7 id, name = identifier when absent, bound app."""
    zone_id, served = await _world(client, admin)
    body = {"identifier": "https://api.example.com", "scopes": ["read", "x y"], **served}
    response = await _post(client, admin, zone_id, body)
    assert response.status_code == 201, response.text
    created = response.json()
    assert set(created) == RESOURCE_KEYS
    assert uuid.UUID(created["id"]).version == 7
    assert created["name"] == created["identifier"] == "https://api.example.com"
    assert created["scopes"] == ["read", "x y"] and created["upstream_url"] == UPSTREAM
    assert created["credential_provider_id"] == served["credential_provider_id"]
    assert created["gateway_application_id"] == served["gateway_application_id"]
    assert ISO_MS.match(created["created_at"]) and ISO_MS.match(created["updated_at"])
    fetched = await client.get(f"/v1/zones/{zone_id}/resources/{created['id']}", headers=admin)
    assert fetched.status_code == 200 and fetched.json() == created
    assert ("caracal.changes", "resource.created") in [(s, p.get("event")) for s, p in await outbox(engine)]


async def test_post_drops_unknown_keys(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    """The route is lenient: a key the contract does not name is ignored, not refused."""
    zone_id, served = await _world(client, admin)
    response = await _post(
        client, admin, zone_id, {"name": "Lenient", "scopes": ["a"], "prefix": 1, **served}
    )
    assert response.status_code == 201, response.text
    assert "prefix" not in response.json()


@pytest.mark.parametrize(
    ("name", "identifier"),
    [
        ("Orders API", "resource://orders-api"),
        ("  Hello,  World!! ", "resource://hello-world"),
        ("ÄÖÜ", "resource://resource"),
        ("resource://kept/as-is", "resource://kept/as-is"),
        ("  resource://trimmed  ", "resource://trimmed"),
    ],
)
async def test_identifier_defaults_to_resource_scheme_and_slug_of_the_name(
    client: httpx.AsyncClient, admin: dict[str, str], name: str, identifier: str
) -> None:
    """Without an identifier: the trimmed name if it is a resource:// one, else resource:// + slug(name)."""
    zone_id, served = await _world(client, admin)
    created = (await _post(client, admin, zone_id, {"name": name, "scopes": ["a"], **served})).json()
    assert (created["identifier"], created["name"]) == (identifier, name)


async def test_default_identifier_skips_taken_ones_archived_included(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """A taken default gets -2, -3 …; an archived resource still holds its identifier."""
    zone_id, served = await _world(client, admin)
    first = (await _post(client, admin, zone_id, {"name": "Same", "scopes": ["a"], **served})).json()
    deleted = await client.delete(f"/v1/zones/{zone_id}/resources/{first['id']}", headers=admin)
    assert deleted.status_code == 204
    identifiers = [
        (await _post(client, admin, zone_id, {"name": "Same", "scopes": ["a"], **served})).json()[
            "identifier"
        ]
        for _ in range(2)
    ]
    assert identifiers == ["resource://same-2", "resource://same-3"]


async def test_default_identifier_after_999_takes_a_uuid_suffix(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """When `-2` … `-999` are all taken, the suffix is the hex of a UUIDv7."""
    zone_id, served = await _world(client, admin)
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO resources (id, zone_id, name, identifier, credential_provider_id, scopes)"
                " SELECT 'r' || n, :zone, 'x', CASE WHEN n = 1 THEN 'resource://full' ELSE"
                " 'resource://full-' || n END, :provider, '{a}' FROM generate_series(1, 999) n"
            ),
            {"zone": zone_id, "provider": served["credential_provider_id"]},
        )
    created = (await _post(client, admin, zone_id, {"name": "Full", "scopes": ["a"], **served})).json()
    suffix = created["identifier"].removeprefix("resource://full-")
    assert re.fullmatch(r"[0-9a-f]{32}", suffix) and uuid.UUID(suffix).version == 7


@pytest.mark.parametrize(
    ("identifier", "message"),
    [
        ("orders", "absolute URL"),
        ("/relative/path", "absolute URL"),
        ("http://", "absolute URL"),
        ("https://exa mple.com", "absolute URL"),
        ("https://host:99999", "absolute URL"),
        ("provider://orders", "provider:"),
        ("PROVIDER:x", "provider:"),
        ("https://user:pw@api.example.com", "username or password"),
        ("resource://user@host", "username or password"),
        ("resource://" + "a" * 2100, "at most 2048 bytes"),
    ],
)
async def test_invalid_identifier_is_400_with_a_message(
    client: httpx.AsyncClient, admin: dict[str, str], identifier: str, message: str
) -> None:
    """Not an absolute URL, the provider: scheme or credentials: 400 invalid_resource_identifier + message."""
    zone_id, served = await _world(client, admin)
    response = await _post(client, admin, zone_id, {"identifier": identifier, "scopes": ["a"], **served})
    assert _error(response, 400) == "invalid_resource_identifier"
    assert message in response.json()["message"]


@pytest.mark.parametrize("identifier", ["urn:caracal:orders", "resource://orders", "https://[::1]:8443/x"])
async def test_absolute_urls_of_any_scheme_are_identifiers(
    client: httpx.AsyncClient, admin: dict[str, str], identifier: str
) -> None:
    """Any absolute URL outside provider: is an identifier (an audience, not a location)."""
    zone_id, served = await _world(client, admin)
    response = await _post(client, admin, zone_id, {"identifier": identifier, "scopes": ["a"], **served})
    assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    "body",
    [
        {"scopes": ["a"]},
        {"name": "x", "scopes": []},
        {"name": "x"},
        {"name": "x", "scopes": "read"},
        {"name": "", "scopes": ["a"]},
        {"identifier": "", "scopes": ["a"]},
        {"name": "x", "scopes": ["a"], "upstream_url": "not a url at all"},
        {"name": "x", "scopes": ["a"], "upstream_url": "ftp://files.example.com"},
        {"name": "x", "scopes": ["a"], "upstream_url": "https://"},
        {"name": "x", "scopes": ["a"], "upstream_url": 7},
        {"name": "x", "scopes": ["a"], "gateway_application_id": ""},
        {"name": "x", "scopes": ["a\u0000"]},
    ],
)
async def test_malformed_body_is_400_invalid_resource_and_writes_nothing(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine, body: dict[str, Any]
) -> None:
    """Missing scopes, no name nor identifier, a non-URL or non-http(s) upstream_url: 400, never 500."""
    zone_id = (await make_zone(client, admin))["id"]
    assert _error(await _post(client, admin, zone_id, body), 400) == "invalid_resource"
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM resources"))).scalar_one() == 0


async def test_gateway_binding_fields_are_required_in_the_contracts_order(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """credential_provider_required, then upstream_url_required, then gateway_application_required."""
    zone_id, served = await _world(client, admin)
    body: dict[str, Any] = {"name": "Needs", "scopes": ["a"]}
    assert _error(await _post(client, admin, zone_id, body), 400) == "credential_provider_required"
    body["credential_provider_id"] = served["credential_provider_id"]
    assert _error(await _post(client, admin, zone_id, body), 400) == "upstream_url_required"
    body["upstream_url"] = UPSTREAM
    assert _error(await _post(client, admin, zone_id, body), 400) == "gateway_application_required"
    body["gateway_application_id"] = None
    assert _error(await _post(client, admin, zone_id, body), 400) == "gateway_application_required"
    body["gateway_application_id"] = served["gateway_application_id"]
    assert (await _post(client, admin, zone_id, body)).status_code == 201


async def test_provider_must_be_live_in_the_zone(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    """A missing, archived or other zone's provider is 404 provider_not_found."""
    zone_id, served = await _world(client, admin)
    other_zone = (await make_zone(client, admin, name="Other"))["id"]
    archived = await make_provider(client, admin, zone_id, name="Gone")
    assert (
        await client.delete(f"/v1/zones/{zone_id}/providers/{archived}", headers=admin)
    ).status_code == 204
    for provider_id in ("nope", archived, await make_provider(client, admin, other_zone)):
        body = {"name": "P", "scopes": ["a"], **served, "credential_provider_id": provider_id}
        assert _error(await _post(client, admin, zone_id, body), 404) == "provider_not_found"


async def test_gateway_application_must_be_live_and_unexpired_in_the_zone(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """A missing, archived, expired or other zone's application is 404 gateway_application_not_found."""
    zone_id, served = await _world(client, admin)
    other_zone = (await make_zone(client, admin, name="Other"))["id"]
    archived = await make_application(client, admin, zone_id)
    assert (
        await client.delete(f"/v1/zones/{zone_id}/applications/{archived}", headers=admin)
    ).status_code == 204
    expired = await make_application(client, admin, zone_id)
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE applications SET expires_at = now() - interval '1 minute' WHERE id = :id"),
            {"id": expired},
        )
    for app_id in ("nope", archived, expired, await make_application(client, admin, other_zone)):
        body = {"name": "A", "scopes": ["a"], **served, "gateway_application_id": app_id}
        assert _error(await _post(client, admin, zone_id, body), 404) == "gateway_application_not_found"


async def test_missing_or_archived_zone_is_404_before_the_field_rules(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """zone_not_found comes first, even for a body whose upstream_url or identifier is wrong."""
    archived = (await make_zone(client, admin))["id"]
    assert (await client.delete(f"/v1/zones/{archived}", headers=admin)).status_code == 204
    for zone_id in ("no-such-zone", archived):
        for body in (
            {"name": "x", "scopes": ["a"], "upstream_url": "not a url"},
            {"identifier": "orders", "scopes": ["a"]},
            {"scopes": ["a"]},
        ):
            assert _error(await _post(client, admin, zone_id, body), 404) == "zone_not_found"


async def test_post_errors_come_in_the_contracts_order(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """invalid_resource < invalid_resource_identifier < protected_resource < provider_not_found <
    binding codes < gateway_application_not_found < resource_quota_exceeded < identifier conflict."""
    zone_id, served = await _world(client, admin)
    bad_upstream = {"identifier": "orders", "upstream_url": "nope", "scopes": ["a"]}
    assert _error(await _post(client, admin, zone_id, bad_upstream), 400) == "invalid_resource"
    no_url = {"identifier": "caracal-control-x", "scopes": ["a"]}
    assert _error(await _post(client, admin, zone_id, no_url), 400) == "invalid_resource_identifier"
    control = {"identifier": "caracal-control", "scopes": ["a"], "credential_provider_id": "nope"}
    assert _error(await _post(client, admin, zone_id, control), 409) == "protected_resource"
    missing_provider = {"name": "x", "scopes": ["a"], "credential_provider_id": "nope"}
    assert _error(await _post(client, admin, zone_id, missing_provider), 404) == "provider_not_found"
    no_app = {**served, "name": "x", "scopes": ["a"], "gateway_application_id": None, "upstream_url": None}
    assert _error(await _post(client, admin, zone_id, no_app), 400) == "upstream_url_required"
    missing_app = {
        **served,
        "identifier": "resource://taken",
        "scopes": ["a"],
        "gateway_application_id": "nope",
    }
    assert _error(await _post(client, admin, zone_id, missing_app), 404) == "gateway_application_not_found"


async def test_quota_counts_live_resources_and_comes_before_the_conflict(
    client: httpx.AsyncClient, admin: dict[str, str], resources: Resources
) -> None:
    """With API_MAX_RESOURCES_PER_ZONE=2 the third live resource is 409 resource_quota_exceeded, even
    for a taken identifier; archiving one makes room; 0 disables the quota."""
    async with app_with(resources, max_resources_per_zone=2) as (small,):
        zone_id, served = await _world(small, admin)
        ids = [
            (await _post(small, admin, zone_id, {"name": f"r{n}", "scopes": ["a"], **served})).json()["id"]
            for n in range(2)
        ]
        taken = {"identifier": "resource://r0", "scopes": ["a"], **served}
        assert _error(await _post(small, admin, zone_id, taken), 409) == "resource_quota_exceeded"
        assert (
            await small.delete(f"/v1/zones/{zone_id}/resources/{ids[0]}", headers=admin)
        ).status_code == 204
        assert _error(await _post(small, admin, zone_id, taken), 409) == "resource_identifier_conflict"
        assert (
            await _post(small, admin, zone_id, {"name": "r2", "scopes": ["a"], **served})
        ).status_code == 201
    async with app_with(resources, max_resources_per_zone=0) as (unlimited,):
        assert (
            await _post(unlimited, admin, zone_id, {"name": "r3", "scopes": ["a"], **served})
        ).status_code == 201


async def test_concurrent_creates_never_pass_the_quota(
    client: httpx.AsyncClient, admin: dict[str, str], resources: Resources, engine: AsyncEngine
) -> None:
    """Eight creates at once against a quota of three: exactly three land (the zone row is locked)."""
    async with app_with(resources, max_resources_per_zone=3) as (small,):
        zone_id, served = await _world(small, admin)
        answers = await asyncio.gather(
            *(_post(small, admin, zone_id, {"name": "Race", "scopes": ["a"], **served}) for _ in range(8))
        )
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [201] * 3 + [409] * 5, [answer.text for answer in answers]
    async with engine.connect() as conn:
        found = (await conn.execute(text("SELECT identifier FROM resources ORDER BY 1"))).scalars().all()
    assert found == ["resource://race", "resource://race-2", "resource://race-3"]


async def test_explicit_identifier_taken_in_the_zone_is_409_and_free_in_another(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """(zone_id, identifier) is unique across every row of the zone; another zone may hold it."""
    zone_id, served = await _world(client, admin)
    body = {"identifier": "resource://orders", "scopes": ["a"], **served}
    assert (await _post(client, admin, zone_id, body)).status_code == 201
    assert _error(await _post(client, admin, zone_id, body), 409) == "resource_identifier_conflict"
    other_zone, other_served = await _world(client, admin)
    assert (await _post(client, admin, other_zone, {**body, **other_served})).status_code == 201


async def test_list_is_newest_first_without_archived_or_control_and_pages_with_link(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """GET lists live resources (binding joined) newest first; the control resource only with the header."""
    zone_id = (await make_zone(client, admin))["id"]
    made = [await make_resource(client, admin, zone_id, name=f"R{n}") for n in range(3)]
    control = await _post(
        client, admin, zone_id, {"identifier": "caracal-control", "scopes": ["a"]}, **MANAGE
    )
    assert control.status_code == 201, control.text
    assert (await client.delete(f"/v1/zones/{zone_id}/resources/{made[0]}", headers=admin)).status_code == 204
    listed = await client.get(f"/v1/zones/{zone_id}/resources", headers=admin)
    assert [row["id"] for row in listed.json()] == [made[2], made[1]]
    assert all(row["gateway_application_id"] for row in listed.json())
    managed = await client.get(f"/v1/zones/{zone_id}/resources", headers={**admin, **MANAGE})
    assert [row["id"] for row in managed.json()] == [control.json()["id"], made[2], made[1]]
    first = await client.get(f"/v1/zones/{zone_id}/resources?limit=1", headers=admin)
    assert [row["id"] for row in first.json()] == [made[2]]
    link = re.fullmatch(r'<([^>]+)>; rel="next"', first.headers["link"])
    assert link is not None
    second = await client.get(link.group(1), headers=admin)
    assert [row["id"] for row in second.json()] == [made[1]] and "link" in second.headers
    wide = await client.get(f"/v1/zones/{zone_id}/resources?limit=3", headers=admin)
    assert len(wide.json()) == 2 and "link" not in wide.headers


async def test_get_is_404_for_missing_archived_and_hidden_control_resources(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """GET one: 404 resource_not_found for an unknown or archived id, and for the control resource
    unless the request carries x-caracal-control-resource: manage."""
    zone_id = (await make_zone(client, admin))["id"]
    archived = await make_resource(client, admin, zone_id)
    assert (
        await client.delete(f"/v1/zones/{zone_id}/resources/{archived}", headers=admin)
    ).status_code == 204
    control = (
        await _post(client, admin, zone_id, {"identifier": "caracal-control", "scopes": ["a"]}, **MANAGE)
    ).json()["id"]
    for resource_id in ("nope", archived, control):
        response = await client.get(f"/v1/zones/{zone_id}/resources/{resource_id}", headers=admin)
        assert _error(response, 404) == "resource_not_found"
    wrong_value = {**admin, "x-caracal-control-resource": "yes"}
    assert (
        await client.get(f"/v1/zones/{zone_id}/resources/{control}", headers=wrong_value)
    ).status_code == 404
    shown = await client.get(f"/v1/zones/{zone_id}/resources/{control}", headers={**admin, **MANAGE})
    assert shown.status_code == 200 and shown.json()["identifier"] == "caracal-control"
