"""Policy sets over HTTP (CONTRACT.md §4.6): create with a binding, read, list, archive, their events."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from caracal.etags import etag_of_bytes
from tests.integration.api_helpers import (
    count_rows,
    make_policy_set,
    make_policy_set_version,
    make_zone,
    outbox,
)

SET_FIELDS = {"id", "zone_id", "name", "description", "created_at", "active_version_id"}


async def _zone(client: httpx.AsyncClient, admin: dict[str, str]) -> str:
    return str((await make_zone(client, admin))["id"])


async def _create(
    client: httpx.AsyncClient, admin: dict[str, str], zone_id: str, body: Any
) -> httpx.Response:
    return await client.post(f"/v1/zones/{zone_id}/policy-sets", json=body, headers=admin)


async def _binding(engine: AsyncEngine, set_id: str) -> tuple[Any, ...] | None:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT zone_id, active_version_id, shadow_version_id FROM policy_set_bindings"
                    " WHERE policy_set_id = :id"
                ),
                {"id": set_id},
            )
        ).first()
    return tuple(row) if row else None


async def test_post_answers_the_full_set_and_writes_an_inactive_binding_and_its_event(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """201 with active_version_id null (DESIGN.md A8), a binding with null versions, policy_set.created."""
    zone_id = await _zone(client, admin)
    response = await _create(client, admin, zone_id, {"name": "Main", "description": "d", "extra": 1})
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == SET_FIELDS
    assert (body["zone_id"], body["name"], body["description"], body["active_version_id"]) == (
        zone_id,
        "Main",
        "d",
        None,
    )
    assert body["created_at"].endswith("Z") and len(body["created_at"]) == 24
    assert await _binding(engine, body["id"]) == (zone_id, None, None)
    changes = [
        payload for stream, payload in await outbox(engine) if payload.get("entity_type") == "policy_set"
    ]
    assert changes == [
        {
            "event": "policy_set.created",
            "zone_id": zone_id,
            "entity_type": "policy_set",
            "entity_id": body["id"],
        }
    ]
    async with engine.connect() as conn:
        created_by = (
            await conn.execute(text("SELECT created_by FROM policy_sets WHERE id = :id"), {"id": body["id"]})
        ).scalar_one()
    assert created_by == "bootstrap"


async def test_post_without_description_stores_null(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    zone_id = await _zone(client, admin)
    response = await _create(client, admin, zone_id, {"name": "No description"})
    assert response.status_code == 201, response.text
    assert response.json()["description"] is None


async def test_missing_zone_outranks_a_bad_body_and_a_bad_body_is_the_throwing_parse_format(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    response = await _create(client, admin, "no-such-zone", {"name": ""})
    assert (response.status_code, response.json()["error"]) == (404, "zone_not_found")
    zone_id = await _zone(client, admin)
    before = await count_rows(engine, "event_outbox")
    for body in ({"name": ""}, {}, {"name": 5}, {"name": "x", "description": 3}):
        response = await _create(client, admin, zone_id, body)
        assert response.status_code == 400, (body, response.text)
        problem = response.json()
        assert (problem["error"], problem["error_description"]) == (
            "invalid_body",
            "Request body failed validation",
        )
        assert problem["requestId"] and isinstance(problem["details"]["issues"], list)
    assert await count_rows(engine, "policy_sets") == 0
    assert await count_rows(engine, "event_outbox") == before


async def test_archived_zone_is_zone_not_found(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    zone_id = await _zone(client, admin)
    assert (await client.delete(f"/v1/zones/{zone_id}", headers=admin)).status_code == 204
    response = await _create(client, admin, zone_id, {"name": "Late"})
    assert (response.status_code, response.json()["error"]) == (404, "zone_not_found")


async def test_a_taken_name_is_409_policy_set_conflict_and_leaves_no_row_or_event(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """The contract's 500 becomes 409 (DESIGN.md A5); the failed transaction emits nothing."""
    zone_id = await _zone(client, admin)
    assert (await _create(client, admin, zone_id, {"name": "Same"})).status_code == 201
    events = await count_rows(engine, "event_outbox")
    response = await _create(client, admin, zone_id, {"name": "Same"})
    assert (response.status_code, response.json()["error"]) == (409, "policy_set_conflict")
    assert await count_rows(engine, "policy_sets") == 1
    assert await count_rows(engine, "policy_set_bindings") == 1
    assert await count_rows(engine, "event_outbox") == events
    other_zone = await _zone(client, admin)
    assert (await _create(client, admin, other_zone, {"name": "Same"})).status_code == 201


async def test_get_and_list_join_the_active_version_and_get_carries_its_strong_etag(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    zone_id = await _zone(client, admin)
    active_set = await make_policy_set(client, admin, zone_id)
    idle = (await _create(client, admin, zone_id, {"name": "Idle"})).json()
    got = await client.get(f"/v1/zones/{zone_id}/policy-sets/{active_set}", headers=admin)
    assert got.status_code == 200, got.text
    assert set(got.json()) == SET_FIELDS
    active_version = got.json()["active_version_id"]
    assert active_version is not None and got.headers["etag"] == etag_of_bytes(got.content)
    idle_got = await client.get(f"/v1/zones/{zone_id}/policy-sets/{idle['id']}", headers=admin)
    assert idle_got.json() == idle and idle_got.headers["etag"] == etag_of_bytes(idle_got.content)
    listed = await client.get(f"/v1/zones/{zone_id}/policy-sets", headers=admin)
    assert [(row["id"], row["active_version_id"]) for row in listed.json()] == [
        (idle["id"], None),
        (active_set, active_version),
    ]


async def test_lists_page_newest_first_with_a_link_header(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    zone_id = await _zone(client, admin)
    ids = [(await _create(client, admin, zone_id, {"name": f"s{n}"})).json()["id"] for n in range(3)]
    first = await client.get(f"/v1/zones/{zone_id}/policy-sets?limit=2", headers=admin)
    assert [row["id"] for row in first.json()] == ids[::-1][:2]
    next_url = first.headers["link"].split(";")[0].strip("<>")
    second = await client.get(next_url, headers=admin)
    assert [row["id"] for row in second.json()] == [ids[0]] and "link" not in second.headers
    bad = await client.get(f"/v1/zones/{zone_id}/policy-sets?limit=0", headers=admin)
    assert (bad.status_code, bad.json()["error"]) == (400, "invalid_query")


async def test_unknown_or_archived_set_is_404_policy_set_not_found(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    zone_id = await _zone(client, admin)
    set_id = (await _create(client, admin, zone_id, {"name": "Gone"})).json()["id"]
    assert (
        await client.delete(f"/v1/zones/{zone_id}/policy-sets/{set_id}", headers=admin)
    ).status_code == 204
    for method in ("GET", "DELETE"):
        response = await client.request(method, f"/v1/zones/{zone_id}/policy-sets/{set_id}", headers=admin)
        assert (response.status_code, response.json()["error"]) == (404, "policy_set_not_found")
    assert (await client.get(f"/v1/zones/{zone_id}/policy-sets", headers=admin)).json() == []


async def test_deleting_an_inactive_set_keeps_its_binding_and_emits_only_the_change(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    zone_id = await _zone(client, admin)
    set_id = (await _create(client, admin, zone_id, {"name": "Idle"})).json()["id"]
    await make_policy_set_version(client, admin, zone_id, set_id)
    before = len(await outbox(engine))
    assert (
        await client.delete(f"/v1/zones/{zone_id}/policy-sets/{set_id}", headers=admin)
    ).status_code == 204
    assert await _binding(engine, set_id) == (zone_id, None, None)
    assert [payload for _, payload in (await outbox(engine))[before:]] == [
        {"event": "policy_set.deleted", "zone_id": zone_id, "entity_type": "policy_set", "entity_id": set_id}
    ]


async def test_deleting_the_active_set_clears_its_binding_and_tells_the_sts(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """DESIGN.md A1: a deleted set is no longer what the STS loads; it is told to reload the zone."""
    zone_id = await _zone(client, admin)
    set_id = await make_policy_set(client, admin, zone_id)
    before = len(await outbox(engine))
    assert (
        await client.delete(f"/v1/zones/{zone_id}/policy-sets/{set_id}", headers=admin)
    ).status_code == 204
    assert await _binding(engine, set_id) == (zone_id, None, None)
    assert (await outbox(engine))[before:] == [
        (
            "caracal.policy.invalidate",
            {"zone_id": zone_id, "policy_set_id": set_id, "reason": "policy_set_deleted"},
        ),
        (
            "caracal.changes",
            {
                "event": "policy_set.deleted",
                "zone_id": zone_id,
                "entity_type": "policy_set",
                "entity_id": set_id,
            },
        ),
    ]
    async with engine.connect() as conn:
        audit = (
            await conn.execute(
                text(
                    "SELECT status_code FROM admin_audit_events WHERE method = 'DELETE' AND entity_id = :id"
                ),
                {"id": set_id},
            )
        ).scalars()
        assert list(audit) == [204]
