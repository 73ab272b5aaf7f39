"""The resource routes' budgets, counted at the Postgres wire: round trips and connections per request."""

from __future__ import annotations

from typing import Any

from tests.integration.wire_budget import ADMIN, Counted, measure

# Round trips once the token is cached and the statements are prepared on the connection.
# A write is BEGIN, its statements, the outbox row, the audit row and COMMIT. POST: the zone row
# locked, the provider, the application, the quota count, the insert, the binding sync (one
# statement: unbind, upsert, revision bump); a generated identifier adds the taken-identifiers read.
BUDGETS = {
    "get_one": 1,
    "get_list": 1,
    "post_explicit_identifier": 10,
    "post_generated_identifier": 11,
    "patch_name": 6,  # the row locked with its binding, the update
    "patch_rebind": 8,  # + the application check, the binding sync
    "delete": 6,  # the archive, the binding sync
}


async def _ok(counted: Counted, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
    response = await counted.http.request(method, path, json=body, headers=ADMIN)
    assert response.status_code == expect, response.text
    return response.json() if response.content else None


async def _zone(counted: Counted) -> tuple[str, dict[str, str]]:
    """A zone and the provider and application its resources name."""
    zone_id = (await _ok(counted, "POST", "/v1/zones", {"name": "Budget"}, 201))["id"]
    base = f"/v1/zones/{zone_id}"
    provider = await _ok(counted, "POST", f"{base}/providers", {"name": "P", "kind": "none"}, 201)
    app = await _ok(
        counted, "POST", f"{base}/applications", {"name": "A", "registration_method": "managed"}, 201
    )
    return zone_id, {
        "scopes": ["read"],
        "upstream_url": "https://upstream.example.com",
        "credential_provider_id": provider["id"],
        "gateway_application_id": app["id"],
    }


async def _resource(counted: Counted, zone_id: str, refs: dict[str, str], identifier: str) -> str:
    body = {**refs, "identifier": identifier}
    return str((await _ok(counted, "POST", f"/v1/zones/{zone_id}/resources", body, 201))["id"])


async def test_get_one_resource_is_one_round_trip_with_its_binding(counted: Counted) -> None:
    """GET …/resources/{id}: one statement in autocommit, the binding joined (no BEGIN, no second read)."""
    zone_id, refs = await _zone(counted)
    resource_id = await _resource(counted, zone_id, refs, "resource://one")
    path = f"/v1/zones/{zone_id}/resources/{resource_id}"
    await measure(counted, "GET", path)
    assert await measure(counted, "GET", path) <= BUDGETS["get_one"]
    assert not any(q.upper().startswith("BEGIN") for q in counted.wire.queries), counted.wire.queries


async def test_resource_list_is_one_round_trip_whatever_its_size(counted: Counted) -> None:
    """No N+1: a page of 30 resources with their bindings costs what a page of one does."""
    zone_id, refs = await _zone(counted)
    for n in range(30):
        await _resource(counted, zone_id, refs, f"resource://list-{n}")
    path = f"/v1/zones/{zone_id}/resources"
    await measure(counted, "GET", f"{path}?limit=1")
    assert await measure(counted, "GET", f"{path}?limit=1") <= BUDGETS["get_list"]
    assert await measure(counted, "GET", f"{path}?limit=30") <= BUDGETS["get_list"]


async def test_post_is_one_transaction_within_its_budget(counted: Counted) -> None:
    """State, binding, revision, outbox and audit rows commit together: one BEGIN, one COMMIT."""
    zone_id, refs = await _zone(counted)
    path = f"/v1/zones/{zone_id}/resources"
    await measure(counted, "POST", path, {**refs, "identifier": "resource://warm"}, expect=201)
    spent = await measure(counted, "POST", path, {**refs, "identifier": "resource://explicit"}, expect=201)
    assert spent <= BUDGETS["post_explicit_identifier"], counted.wire.queries
    assert [q.split()[0].upper().rstrip(";") for q in counted.wire.queries] == ["BEGIN", "COMMIT"]
    spent = await measure(counted, "POST", path, {**refs, "name": "Generated"}, expect=201)
    assert spent <= BUDGETS["post_generated_identifier"], counted.wire.queries


async def test_patch_and_delete_are_one_transaction_each_within_their_budgets(counted: Counted) -> None:
    zone_id, refs = await _zone(counted)
    first, second = [await _resource(counted, zone_id, refs, f"resource://p{n}") for n in range(2)]
    base = f"/v1/zones/{zone_id}/resources"
    await measure(counted, "PATCH", f"{base}/{first}", {"name": "Warm"})
    assert await measure(counted, "PATCH", f"{base}/{second}", {"name": "Renamed"}) <= BUDGETS["patch_name"]
    rebind = {"gateway_application_id": refs["gateway_application_id"]}
    await measure(counted, "PATCH", f"{base}/{first}", rebind)
    assert await measure(counted, "PATCH", f"{base}/{second}", rebind) <= BUDGETS["patch_rebind"]
    assert [q.split()[0].upper().rstrip(";") for q in counted.wire.queries] == ["BEGIN", "COMMIT"]
    await measure(counted, "DELETE", f"{base}/{first}", expect=204)
    assert await measure(counted, "DELETE", f"{base}/{second}", expect=204) <= BUDGETS["delete"]
