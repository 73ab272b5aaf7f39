"""A create that is one statement (POST /v1/zones): the zone, its outbox row and its audit row are
written by one INSERT with CTEs in autocommit, so all or nothing, and nothing when it inserts nothing.

The tables are read here with plain SQL, independently of the helpers that write them.
"""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import TextClause, text
from sqlalchemy.ext.asyncio import AsyncEngine

from caracal_api.resources import Resources
from tests.integration.api_helpers import count_rows

_AUDITS = text(
    "SELECT action, status_code, txid::text AS txid FROM admin_audit_events WHERE request_id = :key"
)
_EVENTS = text(
    "SELECT stream_name, payload_json, txid::text AS txid FROM event_outbox"
    " WHERE payload_json->>'entity_id' = :key ORDER BY seq"
)
_ZONES = text("SELECT id, slug, xmin::text::bigint AS xmin FROM zones WHERE name = :key")


async def _rows(engine: AsyncEngine, query: TextClause, key: str) -> list[Any]:
    async with engine.connect() as conn:
        return list((await conn.execute(query, {"key": key})).all())


async def _audits_of(engine: AsyncEngine, request_id: str) -> list[Any]:
    return await _rows(engine, _AUDITS, request_id)


async def _events_of(engine: AsyncEngine, zone_id: str) -> list[Any]:
    return await _rows(engine, _EVENTS, zone_id)


async def _zones_named(engine: AsyncEngine, name: str) -> list[Any]:
    return await _rows(engine, _ZONES, name)


async def test_zone_outbox_row_and_audit_row_are_written_by_one_transaction(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    for body in ({"name": "At Once", "slug": "at-once"}, {"name": "At Once Generated"}):
        response = await client.post("/v1/zones", json=body, headers=admin)
        assert response.status_code == 201, response.text
        zone_id, request_id = response.json()["id"], response.headers["x-request-id"]
        [event] = await _events_of(engine, zone_id)
        assert event.stream_name == "caracal.changes"
        assert event.payload_json == {
            "event": "zone.created",
            "zone_id": zone_id,
            "entity_type": "zone",
            "entity_id": zone_id,
        }
        [audit] = await _audits_of(engine, request_id)
        assert (audit.action, audit.status_code) == ("POST /v1/zones", 201)
        assert audit.txid == event.txid  # one transaction wrote both, and the zone (its xmin):
        [zone] = await _zones_named(engine, body["name"])
        assert zone.id == zone_id and zone.xmin == int(event.txid) % 2**32


async def test_a_taken_slug_writes_no_event_and_no_success_audit_row(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine, resources: Resources
) -> None:
    first = await client.post("/v1/zones", json={"name": "Taken", "slug": "taken"}, headers=admin)
    assert first.status_code == 201
    events_before = await count_rows(engine, "event_outbox")
    again = await client.post("/v1/zones", json={"name": "Taken Again", "slug": "taken"}, headers=admin)
    assert again.status_code == 409 and again.json()["error"] == "zone_slug_conflict"
    await resources.settled()  # the failed request's own audit row comes through the queue
    assert await count_rows(engine, "event_outbox") == events_before
    assert [(a.action, a.status_code) for a in await _audits_of(engine, again.headers["x-request-id"])] == [
        ("POST /v1/zones", 409)
    ]
    assert await _zones_named(engine, "Taken Again") == []


async def test_a_failing_outbox_insert_takes_the_zone_and_its_audit_row_with_it(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """Postgres refusing the event (a constraint added for this test) leaves no zone and no audit row."""
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "ALTER TABLE event_outbox ADD CONSTRAINT test_refuses_zone_events"
                " CHECK (payload_json->>'event' <> 'zone.created') NOT VALID"
            )
        )
    try:
        audits_before = await count_rows(engine, "admin_audit_events WHERE status_code = 201")
        response = await client.post(
            "/v1/zones", json={"name": "Never Written", "slug": "never"}, headers=admin
        )
        assert response.status_code != 201
    finally:
        async with engine.begin() as conn:
            await conn.execute(text("ALTER TABLE event_outbox DROP CONSTRAINT test_refuses_zone_events"))
    assert await _zones_named(engine, "Never Written") == []
    assert await count_rows(engine, "admin_audit_events WHERE status_code = 201") == audits_before


async def test_patch_and_delete_write_their_event_and_audit_row_in_the_zone_rows_transaction(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    created = await client.post("/v1/zones", json={"name": "Changing", "slug": "changing"}, headers=admin)
    zone_id = created.json()["id"]
    patched = await client.patch(f"/v1/zones/{zone_id}", json={"name": "Changed"}, headers=admin)
    assert patched.status_code == 200 and patched.json()["name"] == "Changed"
    assert patched.headers["etag"]
    [zone] = await _zones_named(engine, "Changed")
    [_created, updated] = await _events_of(engine, zone_id)
    assert updated.payload_json["event"] == "zone.updated"
    [audit] = await _audits_of(engine, patched.headers["x-request-id"])
    assert (audit.action, audit.status_code, audit.txid) == (f"PATCH /v1/zones/{zone_id}", 200, updated.txid)
    assert zone.xmin == int(updated.txid) % 2**32
    deleted = await client.delete(f"/v1/zones/{zone_id}", headers=admin)
    assert deleted.status_code == 204
    [_created, _updated, archived] = await _events_of(engine, zone_id)
    assert archived.payload_json["event"] == "zone.deleted"
    [audit] = await _audits_of(engine, deleted.headers["x-request-id"])
    assert (audit.status_code, audit.txid) == (204, archived.txid)
    assert (await client.get(f"/v1/zones/{zone_id}", headers=admin)).status_code == 404


async def test_patch_and_delete_that_change_nothing_write_nothing(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine, resources: Resources
) -> None:
    """A missing or archived zone is 404, a taken slug 409: no event, no success audit row."""
    await client.post("/v1/zones", json={"name": "Holder", "slug": "held"}, headers=admin)
    other = (await client.post("/v1/zones", json={"name": "Other", "slug": "other"}, headers=admin)).json()
    gone = (await client.post("/v1/zones", json={"name": "Gone", "slug": "gone"}, headers=admin)).json()
    assert (await client.delete(f"/v1/zones/{gone['id']}", headers=admin)).status_code == 204
    events_before = await count_rows(engine, "event_outbox")
    taken = await client.patch(f"/v1/zones/{other['id']}", json={"slug": "held"}, headers=admin)
    assert taken.status_code == 409 and taken.json()["error"] == "zone_slug_conflict"
    for answer in (
        await client.patch(f"/v1/zones/{gone['id']}", json={"name": "Back"}, headers=admin),
        await client.delete(f"/v1/zones/{gone['id']}", headers=admin),
        await client.delete("/v1/zones/0190c5d6-0000-7000-8000-000000000000", headers=admin),
    ):
        assert answer.status_code == 404 and answer.json()["error"] == "zone_not_found"
    await resources.settled()
    assert await count_rows(engine, "event_outbox") == events_before
    assert [z.slug for z in await _zones_named(engine, "Other")] == ["other"]
    assert (
        await count_rows(
            engine, "admin_audit_events WHERE status_code IN (200, 204) AND action LIKE 'PATCH %'"
        )
        == 0
    )
