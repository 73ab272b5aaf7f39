"""POST, GET one and DELETE of /v1/zones/{z}/grants: the contract's fields, errors in order, events."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from caracal.ids import new_id
from tests.integration.api_helpers import count_rows, make_zone, outbox
from tests.integration.grant_world import (
    grant_world,
    insert_application,
    insert_provider,
    insert_resource,
    insert_sessions,
    made_grant,
    post_grant,
)

ISO_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
GRANT_KEYS = {"id", "zone_id", "application_id", "user_id", "resource_id", "scopes", "status", "created_at"}


async def test_create_grant_answers_201_with_exactly_the_contract_fields(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """POST answers the Grant: eight keys, UUIDv7 id, status active, millisecond Z timestamp."""
    world = await grant_world(client, admin, engine)
    body = world.body(scopes=["mail:send", "mail:read"])
    response = await post_grant(client, admin, world.zone_id, body)
    assert response.status_code == 201, response.text
    grant = response.json()
    assert set(grant) == GRANT_KEYS
    assert uuid.UUID(grant["id"]).version == 7
    assert grant["status"] == "active" and ISO_MS.match(grant["created_at"])
    assert {k: grant[k] for k in body} == body
    assert grant["zone_id"] == world.zone_id
    fetched = await client.get(f"/v1/zones/{world.zone_id}/grants/{grant['id']}", headers=admin)
    assert fetched.status_code == 200 and fetched.json() == grant


async def test_create_grant_ignores_unknown_keys(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """The body is lenient: a key the contract does not name is dropped, not refused."""
    world = await grant_world(client, admin, engine)
    response = await post_grant(client, admin, world.zone_id, {**world.body(), "status": "revoked", "x": 1})
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "active" and "x" not in response.json()


async def test_create_grant_writes_its_change_event_and_audit_row(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """grant.created on caracal.changes and a POST audit row, committed with the grant."""
    world = await grant_world(client, admin, engine)
    grant = await made_grant(client, admin, world)
    assert (await outbox(engine))[-1] == (
        "caracal.changes",
        {
            "event": "grant.created",
            "zone_id": world.zone_id,
            "entity_type": "grant",
            "entity_id": grant["id"],
        },
    )
    async with engine.connect() as conn:
        audited = (
            await conn.execute(
                text(
                    "SELECT method, status_code, zone_id FROM admin_audit_events"
                    " WHERE method = 'POST' AND path = :path"
                ),
                {"path": f"/v1/zones/{world.zone_id}/grants"},
            )
        ).all()
    assert [tuple(row) for row in audited] == [("POST", 201, world.zone_id)]


@pytest.mark.parametrize(
    "change",
    [
        {"application_id": None},
        {"application_id": ""},
        {"user_id": ""},
        {"user_id": 7},
        {"user_id": "u" * 513},
        {"resource_id": ""},
        {"scopes": []},
        {"scopes": "mail:read"},
        {"scopes": ["Mail:Read"]},
        {"scopes": ["mail read"]},
        {"scopes": ["x" * 201]},
        {"scopes": [f"s{n}" for n in range(65)]},
        {"scopes": [""]},
        {"user_id": "a\x00b"},
    ],
)
async def test_invalid_body_is_400_invalid_body_with_issues(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine, change: dict[str, object]
) -> None:
    """Each field's rule refuses with the throwing parse's body: invalid_body, details.issues."""
    world = await grant_world(client, admin, engine)
    body = {k: v for k, v in world.body(**change).items() if v is not None}
    response = await post_grant(client, admin, world.zone_id, body)
    assert response.status_code == 400, response.text
    problem = response.json()
    assert problem["error"] == "invalid_body"
    assert problem["error_description"] == "Request body failed validation"
    assert problem["requestId"] == response.headers["x-request-id"]
    issues = problem["details"]["issues"]
    assert issues and all(isinstance(p, str) for issue in issues for p in issue["path"])
    assert await count_rows(engine, "delegated_grants") == 0


@pytest.mark.parametrize("raw", [b"", b"null", b"[]", b"{", b'"text"'])
async def test_a_body_that_is_not_an_object_is_400_invalid_body(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine, raw: bytes
) -> None:
    world = await grant_world(client, admin, engine)
    response = await client.post(
        f"/v1/zones/{world.zone_id}/grants",
        content=raw,
        headers={**admin, "content-type": "application/json"},
    )
    assert (response.status_code, response.json()["error"]) == (400, "invalid_body")


async def test_create_in_a_missing_or_archived_zone_is_404_zone_not_found(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    world = await grant_world(client, admin, engine)
    assert (await post_grant(client, admin, str(uuid.uuid4()), world.body())).json()[
        "error"
    ] == "zone_not_found"
    assert (await client.delete(f"/v1/zones/{world.zone_id}", headers=admin)).status_code == 204
    response = await post_grant(client, admin, world.zone_id, world.body())
    assert (response.status_code, response.json()["error"]) == (404, "zone_not_found")


@pytest.mark.parametrize("body", [{}, {"scopes": []}, {"application_id": 1}])
async def test_a_missing_zone_outranks_a_bad_body(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine, body: dict[str, object]
) -> None:
    """404 zone_not_found comes before 400 invalid_body (CONTRACT.md §4.7's order)."""
    world = await grant_world(client, admin, engine)
    response = await post_grant(client, admin, new_id(), body)
    assert (response.status_code, response.json()["error"]) == (404, "zone_not_found")
    response = await post_grant(client, admin, world.zone_id, body)
    assert (response.status_code, response.json()["error"]) == (400, "invalid_body")


async def test_application_must_exist_in_the_zone_live_and_unexpired(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """Missing, archived, expired, or another zone's application: 404 application_not_found."""
    world = await grant_world(client, admin, engine)
    other_zone = (await make_zone(client, admin, name="Other"))["id"]
    past = datetime.now(UTC) - timedelta(seconds=1)
    future = datetime.now(UTC) + timedelta(hours=1)
    refused = [
        new_id(),
        await insert_application(engine, world.zone_id, archived_at=past),
        await insert_application(engine, world.zone_id, method="dcr", expires_at=past),
        await insert_application(engine, other_zone),
    ]
    for application_id in refused:
        # the resource is missing too: the application is checked first
        response = await post_grant(
            client, admin, world.zone_id, world.body(application_id=application_id, resource_id=new_id())
        )
        assert (response.status_code, response.json()["error"]) == (404, "application_not_found")
    dcr = await insert_application(engine, world.zone_id, method="dcr", expires_at=future)
    assert (await post_grant(client, admin, world.zone_id, world.body(application_id=dcr))).status_code == 201


async def test_resource_must_exist_in_the_zone_and_be_live(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """Missing, archived or another zone's resource: 404 resource_not_found, before the scope rule."""
    world = await grant_world(client, admin, engine)
    other_zone = (await make_zone(client, admin, name="Other"))["id"]
    other_provider = await insert_provider(engine, other_zone)
    refused = [
        new_id(),
        await insert_resource(engine, world.zone_id, world.provider_id, ["a"], archived_at=datetime.now(UTC)),
        await insert_resource(engine, other_zone, other_provider, ["mail:read"]),
    ]
    for resource_id in refused:
        response = await post_grant(
            client, admin, world.zone_id, world.body(resource_id=resource_id, scopes=["not:there"])
        )
        assert (response.status_code, response.json()["error"]) == (404, "resource_not_found")
    assert await count_rows(engine, "delegated_grants") == 0


@pytest.mark.parametrize("scopes", [["mail:delete"], ["mail:read", "mail:delete"], ["mail:read", "mail"]])
async def test_scopes_beyond_the_resource_are_403_grant_scopes_exceed_resource(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine, scopes: list[str]
) -> None:
    world = await grant_world(client, admin, engine)
    response = await post_grant(client, admin, world.zone_id, world.body(scopes=scopes))
    assert (response.status_code, response.json()["error"]) == (403, "grant_scopes_exceed_resource")
    assert await count_rows(engine, "delegated_grants") == 0
    assert not [p for _, p in await outbox(engine) if p.get("entity_type") == "grant"]


async def test_get_unknown_or_other_zones_grant_is_404_grant_not_found(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    world = await grant_world(client, admin, engine)
    grant = await made_grant(client, admin, world)
    other_zone = (await make_zone(client, admin, name="Other"))["id"]
    for zone_id, grant_id in ((world.zone_id, new_id()), (other_zone, grant["id"])):
        response = await client.get(f"/v1/zones/{zone_id}/grants/{grant_id}", headers=admin)
        assert (response.status_code, response.json()["error"]) == (404, "grant_not_found")
        response = await client.delete(f"/v1/zones/{zone_id}/grants/{grant_id}", headers=admin)
        assert (response.status_code, response.json()["error"]) == (404, "grant_not_found")
    assert (await client.get(f"/v1/zones/{world.zone_id}/grants/{grant['id']}", headers=admin)).json()[
        "status"
    ] == "active"


async def test_delete_revokes_the_grant_and_repeats_with_204(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """DELETE answers 204 and the grant reads revoked; a second DELETE is 204 again."""
    world = await grant_world(client, admin, engine)
    grant = await made_grant(client, admin, world)
    url = f"/v1/zones/{world.zone_id}/grants/{grant['id']}"
    first = await client.delete(url, headers=admin)
    assert first.status_code == 204 and first.content == b""
    assert (await client.get(url, headers=admin)).json() == {**grant, "status": "revoked"}
    revoked_at = await _updated_at(engine, grant["id"])
    assert (await client.delete(url, headers=admin)).status_code == 204
    assert await _updated_at(engine, grant["id"]) == revoked_at  # the revocation time stays
    changes = [p for s, p in await outbox(engine) if s == "caracal.changes" and p["entity_type"] == "grant"]
    assert [p["event"] for p in changes] == ["grant.created", "grant.revoked", "grant.revoked"]


async def _updated_at(engine: AsyncEngine, grant_id: str) -> datetime:
    async with engine.connect() as conn:
        found = await conn.execute(
            text("SELECT updated_at FROM delegated_grants WHERE id = :id"), {"id": grant_id}
        )
        value: datetime = found.scalar_one()
        return value


async def test_delete_revokes_every_active_session_of_the_user_in_batches_one_event_each(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """2,500 active sessions of the grant's user (three batches) are revoked, each with exactly one
    caracal.sessions.revoke entry {zone_id, session_id, reason, grant_id}, oldest first; sessions of
    other subjects, other zones and inactive ones are untouched."""
    world = await grant_world(client, admin, engine)
    grant = await made_grant(client, admin, world, user_id="alice")
    other_zone = (await make_zone(client, admin, name="Other"))["id"]
    mine = await insert_sessions(engine, world.zone_id, "alice", 2500)
    untouched = [
        *await insert_sessions(engine, world.zone_id, "bob", 3),
        *await insert_sessions(engine, world.zone_id, None, 2),
        *await insert_sessions(engine, other_zone, "alice", 3),
    ]
    expired = await insert_sessions(engine, world.zone_id, "alice", 2, status="expired")
    before = len(await outbox(engine))
    response = await client.delete(f"/v1/zones/{world.zone_id}/grants/{grant['id']}", headers=admin)
    assert response.status_code == 204
    events = (await outbox(engine))[before:]
    revokes = [payload for stream, payload in events if stream == "caracal.sessions.revoke"]
    assert revokes == [
        {"zone_id": world.zone_id, "session_id": sid, "reason": "grant_revoked", "grant_id": grant["id"]}
        for sid in mine
    ]
    statuses = await _session_statuses(engine)
    assert all(statuses[sid] == "revoked" for sid in mine)
    assert all(statuses[sid] == "active" for sid in untouched)
    assert all(statuses[sid] == "expired" for sid in expired)
    assert events[-1][1]["event"] == "grant.revoked"
    # nothing left to revoke: a repeated DELETE writes only its change event
    assert (
        await client.delete(f"/v1/zones/{world.zone_id}/grants/{grant['id']}", headers=admin)
    ).status_code == 204
    assert [s for s, _ in (await outbox(engine))[before + len(events) :]] == ["caracal.changes"]


async def _session_statuses(engine: AsyncEngine) -> dict[str, str]:
    async with engine.connect() as conn:
        return {row.id: row.status for row in await conn.execute(text("SELECT id, status FROM sessions"))}


async def test_delete_of_a_grant_with_locked_sessions_skips_them_instead_of_waiting(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """A session another transaction holds (the STS updating it) is skipped, not waited for."""
    world = await grant_world(client, admin, engine)
    grant = await made_grant(client, admin, world, user_id="alice")
    held, free = await insert_sessions(engine, world.zone_id, "alice", 2)
    async with engine.connect() as other:
        await other.execute(text("SELECT 1 FROM sessions WHERE id = :id FOR UPDATE"), {"id": held})
        response = await client.delete(f"/v1/zones/{world.zone_id}/grants/{grant['id']}", headers=admin)
        assert response.status_code == 204
        await other.rollback()
    statuses = await _session_statuses(engine)
    assert (statuses[held], statuses[free]) == ("active", "revoked")


@pytest.mark.parametrize(("drop", "path"), [("user_id", ["user_id"]), ("scopes", ["scopes"])])
async def test_a_missing_field_is_named_in_the_issue_path(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine, drop: str, path: list[str]
) -> None:
    """As the original's parser says it: the issue's path is the missing field's, not the object's."""
    world = await grant_world(client, admin, engine)
    body = {k: v for k, v in world.body().items() if k != drop}
    response = await post_grant(client, admin, world.zone_id, body)
    assert response.status_code == 400, response.text
    assert [issue["path"] for issue in response.json()["details"]["issues"]] == [path]
