"""Teams (CONTRACT.md §4.11): lenient throwing bodies, members replaced, unique names, hard delete."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.api_helpers import count_rows, make_zone, outbox
from tests.integration.people_rows import make_team


def url(zone_id: str, team_id: str = "") -> str:
    return f"/v1/zones/{zone_id}/teams" + (f"/{team_id}" if team_id else "")


def changes(events: list[tuple[str, dict[str, Any]]], prefix: str = "team.") -> list[str]:
    return [
        str(p["event"])
        for s, p in events
        if s == "caracal.changes" and str(p.get("event")).startswith(prefix)
    ]


async def test_post_creates_a_team_answering_members_json(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """`members` in, `members_json` out; member keys beyond id and role are dropped; unknown keys too."""
    zone_id = (await make_zone(client, admin))["id"]
    body = {"name": "Ops", "members": [{"id": "u1", "role": "owner", "email": "x"}], "colour": "red"}
    response = await client.post(url(zone_id), json=body, headers=admin)
    assert response.status_code == 201, response.text
    team = response.json()
    assert set(team) == {"id", "zone_id", "name", "members_json", "created_at", "updated_at"}
    assert (team["zone_id"], team["name"], team["members_json"]) == (
        zone_id,
        "Ops",
        [{"id": "u1", "role": "owner"}],
    )
    assert (await client.get(url(zone_id, team["id"]), headers=admin)).json() == team
    assert changes(await outbox(engine)) == ["team.created"]


async def test_members_default_to_an_empty_list(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    zone_id = (await make_zone(client, admin))["id"]
    response = await client.post(url(zone_id), json={"name": "Solo"}, headers=admin)
    assert (response.status_code, response.json()["members_json"]) == (201, [])


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({}, []),  # a missing field: its message names it, its path stays empty
        ({"name": ""}, ["name"]),
        ({"name": 3}, ["name"]),
        ({"name": "T", "members": [{"id": "u1"}]}, ["members", "0"]),
        ({"name": "T", "members": [{"id": 1, "role": "r"}]}, ["members", "0", "id"]),
        ({"name": "T", "members": None}, ["members"]),
    ],
)
async def test_post_refuses_a_bad_body_in_the_throwing_format(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    engine: AsyncEngine,
    body: dict[str, Any],
    path: list[str],
) -> None:
    zone_id = (await make_zone(client, admin))["id"]
    response = await client.post(url(zone_id), json=body, headers=admin)
    assert response.status_code == 400, response.text
    problem = response.json()
    assert (problem["error"], problem["error_description"]) == (
        "invalid_body",
        "Request body failed validation",
    )
    assert problem["requestId"] == response.headers["x-request-id"]
    issue = problem["details"]["issues"][0]
    assert issue["path"][: len(path)] == path and "name" in str(body) + issue["message"], problem
    assert await count_rows(engine, "teams") == 0


async def test_a_bad_body_is_400_even_in_a_missing_zone(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """The original never looks at the zone before the body, so the body's error comes first."""
    response = await client.post(url("no-such-zone"), json={"name": ""}, headers=admin)
    assert (response.status_code, response.json()["error"]) == (400, "invalid_body")


async def test_post_in_a_missing_or_archived_zone_is_404_zone_not_found(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """The original answered a missing zone with 500 (A5); ours 404, and an archived zone likewise."""
    archived = (await make_zone(client, admin))["id"]
    assert (await client.delete(f"/v1/zones/{archived}", headers=admin)).status_code == 204
    for zone_id in ("no-such-zone", archived):
        response = await client.post(url(zone_id), json={"name": "T"}, headers=admin)
        assert (response.status_code, response.json()["error"]) == (404, "zone_not_found")
    assert await count_rows(engine, "teams") == 0


async def test_a_taken_name_is_409_team_conflict_in_its_zone_only(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    zone_id, other = (await make_zone(client, admin))["id"], (await make_zone(client, admin, name="B"))["id"]
    await make_team(client, admin, zone_id, name="Ops")
    taken = await client.post(url(zone_id), json={"name": "Ops"}, headers=admin)
    assert (taken.status_code, taken.json()["error"]) == (409, "team_conflict")
    assert (await client.post(url(other), json={"name": "Ops"}, headers=admin)).status_code == 201
    renamed_onto = await make_team(client, admin, zone_id, name="Dev")
    clash = await client.patch(url(zone_id, renamed_onto), json={"name": "Ops"}, headers=admin)
    assert (clash.status_code, clash.json()["error"]) == (409, "team_conflict")


async def test_patch_changes_given_fields_and_replaces_members(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    zone_id = (await make_zone(client, admin))["id"]
    team_id = await make_team(client, admin, zone_id, name="Ops")
    before = (await client.get(url(zone_id, team_id), headers=admin)).json()
    members = [{"id": "u2", "role": "member"}, {"id": "u3", "role": "viewer"}]
    response = await client.patch(url(zone_id, team_id), json={"members": members, "other": 1}, headers=admin)
    assert response.status_code == 200, response.text
    after = response.json()
    assert (after["name"], after["members_json"]) == ("Ops", members)
    assert after["updated_at"] > before["updated_at"] and after["created_at"] == before["created_at"]
    renamed = await client.patch(url(zone_id, team_id), json={"name": "Platform"}, headers=admin)
    assert (renamed.json()["name"], renamed.json()["members_json"]) == ("Platform", members)
    assert changes(await outbox(engine)) == ["team.created", "team.updated", "team.updated"]


async def test_patch_errors_in_the_contract_order(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    """A bad body, then no fields, then the missing team."""
    zone_id = (await make_zone(client, admin))["id"]
    bad = await client.patch(url(zone_id, "missing"), json={"name": ""}, headers=admin)
    assert (bad.status_code, bad.json()["error"]) == (400, "invalid_body")
    empty = await client.patch(url(zone_id, "missing"), json={"unknown": 1}, headers=admin)
    assert (empty.status_code, empty.json()["error"]) == (400, "no_fields")
    missing = await client.patch(url(zone_id, "missing"), json={"name": "T"}, headers=admin)
    assert (missing.status_code, missing.json()["error"]) == (404, "team_not_found")


async def test_delete_removes_the_team_for_good(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    zone_id = (await make_zone(client, admin))["id"]
    team_id = await make_team(client, admin, zone_id, name="Ops")
    assert (await client.delete(url(zone_id, team_id), headers=admin)).status_code == 204
    assert await count_rows(engine, "teams") == 0
    again = await client.delete(url(zone_id, team_id), headers=admin)
    assert (again.status_code, again.json()["error"]) == (404, "team_not_found")
    gone = await client.get(url(zone_id, team_id), headers=admin)
    assert (gone.status_code, gone.json()["error"]) == (404, "team_not_found")
    assert (await client.post(url(zone_id), json={"name": "Ops"}, headers=admin)).status_code == 201
    assert changes(await outbox(engine)) == ["team.created", "team.deleted", "team.created"]


async def test_list_pages_newest_first_with_a_link_header(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    zone_id = (await make_zone(client, admin))["id"]
    made = [await make_team(client, admin, zone_id) for _ in range(3)]
    first = await client.get(url(zone_id) + "?limit=2", headers=admin)
    assert [t["id"] for t in first.json()] == made[::-1][:2]
    second = await client.get(first.headers["link"].split(">")[0].lstrip("<"), headers=admin)
    assert [t["id"] for t in second.json()] == made[:1] and "link" not in second.headers
    bad = await client.get(url(zone_id) + "?limit=501", headers=admin)
    assert (bad.status_code, bad.json()["error"]) == (400, "invalid_query")
