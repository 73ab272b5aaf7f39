"""Invitations (CONTRACT.md §4.12): the lenient POST (its 400 before the zone), list of all, DELETE."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.api_helpers import count_rows, make_zone, outbox
from tests.integration.people_rows import make_invitation

BODY = {"email": "ada@example.com", "role": "admin", "invited_by": "root"}


def url(zone_id: str, invitation_id: str = "") -> str:
    return f"/v1/zones/{zone_id}/invitations" + (f"/{invitation_id}" if invitation_id else "")


def parsed(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def test_post_creates_an_invitation_valid_for_seven_days(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    zone_id = (await make_zone(client, admin))["id"]
    response = await client.post(url(zone_id), json={**BODY, "note": "dropped"}, headers=admin)
    assert response.status_code == 201, response.text
    made = response.json()
    assert set(made) == {
        "id",
        "zone_id",
        "email",
        "role",
        "invited_by",
        "accepted_at",
        "expires_at",
        "created_at",
    }
    assert (made["zone_id"], made["email"], made["role"], made["invited_by"], made["accepted_at"]) == (
        zone_id,
        "ada@example.com",
        "admin",
        "root",
        None,
    )
    assert parsed(made["expires_at"]) - parsed(made["created_at"]) == timedelta(days=7)
    events = [p for s, p in await outbox(engine) if str(p.get("event")).startswith("invitation.")]
    assert events == [
        {
            "event": "invitation.created",
            "zone_id": zone_id,
            "entity_type": "invitation",
            "entity_id": made["id"],
        }
    ]


async def test_post_keeps_a_given_expiry(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    zone_id = (await make_zone(client, admin))["id"]
    response = await client.post(
        url(zone_id), json={**BODY, "expires_at": "2027-01-02T03:04:05.678901Z"}, headers=admin
    )
    assert (response.status_code, response.json()["expires_at"]) == (201, "2027-01-02T03:04:05.678Z")


@pytest.mark.parametrize(
    "change",
    [
        {"email": "not-an-email"},
        {"email": "a@b"},
        {"email": "a..b@example.com"},
        {"email": 7},
        {"role": ""},
        {"invited_by": ""},
        {"role": None},
        {"expires_at": "2027-01-02T03:04:05+02:00"},
        {"expires_at": "2027-02-30T00:00:00Z"},
        {"expires_at": "tomorrow"},
    ],
)
async def test_post_refuses_a_bad_body_with_invalid_invitation(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine, change: dict[str, Any]
) -> None:
    zone_id = (await make_zone(client, admin))["id"]
    response = await client.post(url(zone_id), json={**BODY, **change}, headers=admin)
    assert (response.status_code, response.json()["error"]) == (400, "invalid_invitation"), response.text
    assert await count_rows(engine, "invitations") == 0


@pytest.mark.parametrize("missing", ["email", "role", "invited_by"])
async def test_post_needs_email_role_and_inviter(
    client: httpx.AsyncClient, admin: dict[str, str], missing: str
) -> None:
    zone_id = (await make_zone(client, admin))["id"]
    body = {k: v for k, v in BODY.items() if k != missing}
    response = await client.post(url(zone_id), json=body, headers=admin)
    assert (response.status_code, response.json()["error"]) == (400, "invalid_invitation")


async def test_a_bad_body_outranks_a_missing_zone(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    """invalid_invitation is checked before the zone (CONTRACT.md §4.12)."""
    response = await client.post(url("no-such-zone"), json={**BODY, "email": "x"}, headers=admin)
    assert (response.status_code, response.json()["error"]) == (400, "invalid_invitation")


async def test_post_in_a_missing_or_archived_zone_is_404_zone_not_found(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    archived = (await make_zone(client, admin))["id"]
    assert (await client.delete(f"/v1/zones/{archived}", headers=admin)).status_code == 204
    for zone_id in ("no-such-zone", archived):
        response = await client.post(url(zone_id), json=BODY, headers=admin)
        assert (response.status_code, response.json()["error"]) == (404, "zone_not_found")
    assert await count_rows(engine, "invitations") == 0


async def _accept(engine: AsyncEngine, invitation_id: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE invitations SET accepted_at = now() WHERE id = :id"), {"id": invitation_id}
        )


async def test_list_holds_every_invitation_accepted_and_expired_ones_too(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    zone_id = (await make_zone(client, admin))["id"]
    pending = await make_invitation(client, admin, zone_id)
    expired = await make_invitation(client, admin, zone_id, expires_at="2020-01-01T00:00:00Z")
    accepted = await make_invitation(client, admin, zone_id)
    await _accept(engine, accepted)
    listed = (await client.get(url(zone_id), headers=admin)).json()
    assert [i["id"] for i in listed] == [accepted, expired, pending]
    assert listed[0]["accepted_at"] is not None
    assert parsed(listed[1]["expires_at"]) < datetime.now(UTC)
    first = await client.get(url(zone_id) + "?limit=2", headers=admin)
    assert [i["id"] for i in first.json()] == [accepted, expired] and 'rel="next"' in first.headers["link"]


async def test_delete_withdraws_a_pending_invitation(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    zone_id = (await make_zone(client, admin))["id"]
    invitation_id = await make_invitation(client, admin, zone_id)
    assert (await client.delete(url(zone_id, invitation_id), headers=admin)).status_code == 204
    assert await count_rows(engine, "invitations") == 0
    again = await client.delete(url(zone_id, invitation_id), headers=admin)
    assert (again.status_code, again.json()["error"]) == (404, "invitation_not_found")
    assert [p["event"] for s, p in await outbox(engine) if str(p.get("event")).startswith("invitation.")] == [
        "invitation.created",
        "invitation.deleted",
    ]


async def test_an_accepted_invitation_is_not_deleted_and_answers_404(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    zone_id = (await make_zone(client, admin))["id"]
    invitation_id = await make_invitation(client, admin, zone_id)
    await _accept(engine, invitation_id)
    response = await client.delete(url(zone_id, invitation_id), headers=admin)
    assert (response.status_code, response.json()["error"]) == (404, "invitation_not_found")
    assert await count_rows(engine, "invitations") == 1
