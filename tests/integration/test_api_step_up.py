"""Step-up challenges (CONTRACT.md §4.10): reads, and satisfy with every rule, exactly once."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.api_helpers import bearer, make_token, make_zone, outbox
from tests.integration.people_rows import insert_challenge, insert_session, make_challenge

FIELDS = {
    "id",
    "zone_id",
    "session_id",
    "challenge_type",
    "metadata_json",
    "created_at",
    "expires_at",
    "satisfied_at",
    "approver_subject_id",
}


def url(zone_id: str, challenge_id: str = "") -> str:
    return f"/v1/zones/{zone_id}/step-up-challenges" + (f"/{challenge_id}" if challenge_id else "")


async def satisfy(
    client: httpx.AsyncClient, headers: dict[str, str], zone_id: str, challenge_id: str, body: object
) -> httpx.Response:
    return await client.post(f"{url(zone_id, challenge_id)}/satisfy", json=body, headers=headers)


async def stored(engine: AsyncEngine, challenge_id: str) -> tuple[object, object]:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT satisfied_at, approver_subject_id FROM step_up_challenges WHERE id = :id"),
                {"id": challenge_id},
            )
        ).one()
    return row.satisfied_at, row.approver_subject_id


async def test_get_answers_the_challenge_with_the_contract_fields(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    zone_id = (await make_zone(client, admin))["id"]
    session_id = await insert_session(engine, zone_id)
    challenge_id = await insert_challenge(engine, zone_id, session_id, metadata={"reason": "wire"})
    response = await client.get(url(zone_id, challenge_id), headers=admin)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == FIELDS
    assert body["session_id"] == session_id and body["metadata_json"] == {"reason": "wire"}
    assert (body["challenge_type"], body["satisfied_at"], body["approver_subject_id"]) == (
        "human_approval",
        None,
        None,
    )
    assert body["expires_at"].endswith("Z") and len(body["created_at"]) == len("2026-06-03T10:12:13.456Z")


async def test_get_of_an_unknown_challenge_is_404_challenge_not_found(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    zone_id = (await make_zone(client, admin))["id"]
    response = await client.get(url(zone_id, "missing"), headers=admin)
    assert (response.status_code, response.json()["error"]) == (404, "challenge_not_found")


async def test_list_pages_newest_first_with_a_link_header(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    zone_id = (await make_zone(client, admin))["id"]
    made = [await make_challenge(engine, zone_id) for _ in range(3)]
    first = await client.get(url(zone_id) + "?limit=2", headers=admin)
    assert first.status_code == 200
    assert [row["id"] for row in first.json()] == made[::-1][:2]
    next_url = first.headers["link"].split(">")[0].lstrip("<")
    second = await client.get(next_url, headers=admin)
    assert [row["id"] for row in second.json()] == made[:1] and "link" not in second.headers


@pytest.mark.parametrize(("query", "code"), [("limit=0", "invalid_query"), ("cursor=%21", "invalid_cursor")])
async def test_list_refuses_bad_pagination(
    client: httpx.AsyncClient, admin: dict[str, str], query: str, code: str
) -> None:
    zone_id = (await make_zone(client, admin))["id"]
    response = await client.get(f"{url(zone_id)}?{query}", headers=admin)
    assert (response.status_code, response.json()["error"]) == (400, code)


async def test_satisfy_records_the_approver_once_with_its_change_event(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    zone_id = (await make_zone(client, admin))["id"]
    challenge_id = await make_challenge(engine, zone_id)
    response = await satisfy(client, admin, zone_id, challenge_id, {"approver_subject_id": "boss", "x": 1})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"id", "satisfied_at", "approver_subject_id"}
    assert (body["id"], body["approver_subject_id"]) == (challenge_id, "boss")
    fetched = (await client.get(url(zone_id, challenge_id), headers=admin)).json()
    assert (fetched["satisfied_at"], fetched["approver_subject_id"]) == (body["satisfied_at"], "boss")
    changes = [p for s, p in await outbox(engine) if p.get("event") == "step_up_challenge.satisfied"]
    assert changes == [
        {
            "event": "step_up_challenge.satisfied",
            "zone_id": zone_id,
            "entity_type": "step_up_challenge",
            "entity_id": challenge_id,
        }
    ]


async def test_a_satisfied_challenge_is_not_satisfiable_again(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    zone_id = (await make_zone(client, admin))["id"]
    challenge_id = await make_challenge(engine, zone_id)
    assert (
        await satisfy(client, admin, zone_id, challenge_id, {"approver_subject_id": "a"})
    ).status_code == 200
    again = await satisfy(client, admin, zone_id, challenge_id, {"approver_subject_id": "b"})
    assert (again.status_code, again.json()["error"]) == (409, "challenge_not_satisfiable")
    assert (await stored(engine, challenge_id))[1] == "a"


async def _expired(engine: AsyncEngine, zone_id: str) -> str:
    session_id = await insert_session(engine, zone_id)
    return await insert_challenge(engine, zone_id, session_id, expires_in=timedelta(seconds=-1))


async def _without_session(engine: AsyncEngine, zone_id: str) -> str:
    return await insert_challenge(engine, zone_id, None)


async def _session_gone(engine: AsyncEngine, zone_id: str) -> str:
    return await insert_challenge(engine, zone_id, "no-such-session")


async def _own_subject(engine: AsyncEngine, zone_id: str) -> str:
    return await insert_challenge(
        engine, zone_id, await insert_session(engine, zone_id, subject_id="approver")
    )


async def _other_zones_session(engine: AsyncEngine, zone_id: str) -> str:
    async with engine.connect() as conn:
        other = (
            await conn.execute(text("SELECT id FROM zones WHERE id <> :z LIMIT 1"), {"z": zone_id})
        ).scalar_one()
    return await insert_challenge(engine, zone_id, await insert_session(engine, other))


@pytest.mark.parametrize(
    "make",
    [_expired, _without_session, _session_gone, _own_subject, _other_zones_session],
    ids=["expired", "no_session", "session_missing", "self_approval", "session_of_another_zone"],
)
async def test_satisfy_refuses_challenges_outside_the_rules_with_409(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine, make: object
) -> None:
    """Expired, sessionless, a session that does not exist (in the zone), or the session's own subject."""
    zone_id = (await make_zone(client, admin))["id"]
    await make_zone(client, admin, name="Other")
    challenge_id = await make(engine, zone_id)  # type: ignore[operator]
    response = await satisfy(client, admin, zone_id, challenge_id, {"approver_subject_id": "approver"})
    assert (response.status_code, response.json()["error"]) == (409, "challenge_not_satisfiable")
    assert await stored(engine, challenge_id) == (None, None)


async def test_a_session_without_subject_may_be_approved_by_anyone(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    zone_id = (await make_zone(client, admin))["id"]
    challenge_id = await insert_challenge(
        engine, zone_id, await insert_session(engine, zone_id, subject_id=None)
    )
    response = await satisfy(client, admin, zone_id, challenge_id, {"approver_subject_id": "anyone"})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"approver_subject_id": ""},
        {"approver_subject_id": "x" * 257},
        {"approver_subject_id": 7},
        [],
        None,
    ],
)
async def test_satisfy_refuses_a_bad_approver_with_400_invalid_request(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine, body: object
) -> None:
    zone_id = (await make_zone(client, admin))["id"]
    challenge_id = await make_challenge(engine, zone_id)
    response = await satisfy(client, admin, zone_id, challenge_id, body)
    assert (response.status_code, response.json()["error"]) == (400, "invalid_request")
    assert await stored(engine, challenge_id) == (None, None)


async def test_satisfy_accepts_an_approver_of_256_characters(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    zone_id = (await make_zone(client, admin))["id"]
    challenge_id = await make_challenge(engine, zone_id)
    response = await satisfy(client, admin, zone_id, challenge_id, {"approver_subject_id": "x" * 256})
    assert response.status_code == 200, response.text


async def test_satisfy_of_an_unknown_challenge_is_404_challenge_not_found(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """Not in the zone: 404 like every object of another zone (DESIGN.md), where the original said 409."""
    zone_id = (await make_zone(client, admin))["id"]
    response = await satisfy(client, admin, zone_id, "missing", {"approver_subject_id": "a"})
    assert (response.status_code, response.json()["error"]) == (404, "challenge_not_found")


async def test_of_concurrent_approvers_exactly_one_wins(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """Eight approvers at once: one 200, seven 409; the stored approver is the winner's."""
    zone_id = (await make_zone(client, admin))["id"]
    challenge_id = await make_challenge(engine, zone_id)
    responses = await asyncio.gather(
        *(satisfy(client, admin, zone_id, challenge_id, {"approver_subject_id": f"a{n}"}) for n in range(8))
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [409] * 7, [r.text for r in responses]
    (winner,) = (r.json()["approver_subject_id"] for r in responses if r.status_code == 200)
    assert (await stored(engine, challenge_id))[1] == winner


async def test_an_approve_token_may_read_and_satisfy_but_not_change_anything_else(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    zone_id = (await make_zone(client, admin))["id"]
    approver = bearer(
        (await make_token(client, admin, scope="zone", zone_id=zone_id, capability="approve"))["token"]
    )
    challenge_id = await make_challenge(engine, zone_id)
    assert (await client.get(url(zone_id), headers=approver)).status_code == 200
    assert (await client.get(url(zone_id, challenge_id), headers=approver)).status_code == 200
    assert (
        await satisfy(client, approver, zone_id, challenge_id, {"approver_subject_id": "a"})
    ).status_code == 200
    refused = await client.post(f"/v1/zones/{zone_id}/teams", json={"name": "T"}, headers=approver)
    assert (refused.status_code, refused.json()["error"]) == (403, "admin_token_approve_only")


async def test_a_read_token_may_not_satisfy(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    zone_id = (await make_zone(client, admin))["id"]
    reader = bearer((await make_token(client, admin, capability="read"))["token"])
    challenge_id = await make_challenge(engine, zone_id)
    response = await satisfy(client, reader, zone_id, challenge_id, {"approver_subject_id": "a"})
    assert (response.status_code, response.json()["error"]) == (403, "admin_token_read_only")
    assert await stored(engine, challenge_id) == (None, None)
