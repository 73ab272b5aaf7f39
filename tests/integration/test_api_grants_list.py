"""GET /v1/zones/{z}/grants: joined names, every filter of CONTRACT.md §4.7, paging, query errors."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncEngine

from caracal.db.paging import Page
from caracal.domain.grants import _page_query
from caracal.ids import new_id
from tests.integration.api_helpers import make_zone
from tests.integration.grant_world import (
    GrantWorld,
    grant_world,
    insert_application,
    insert_provider,
    insert_resource,
    made_grant,
)

LIST_KEYS = {
    "id",
    "zone_id",
    "application_id",
    "user_id",
    "resource_id",
    "scopes",
    "status",
    "created_at",
    "provider_id",
    "application_name",
    "resource_name",
    "provider_name",
    "provider_kind",
}


async def _list(client: httpx.AsyncClient, admin: dict[str, str], zone_id: str, query: str = "") -> Any:
    response = await client.get(f"/v1/zones/{zone_id}/grants{query}", headers=admin)
    assert response.status_code == 200, response.text
    return response.json()


async def test_list_rows_carry_the_joined_names_newest_first(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """A bare array of list rows: the grant plus provider_id and the names and kind, newest first."""
    world = await grant_world(client, admin, engine)
    first = await made_grant(client, admin, world)
    second = await made_grant(client, admin, world, user_id="user-2")
    rows = await _list(client, admin, world.zone_id)
    assert [row["id"] for row in rows] == [second["id"], first["id"]]
    assert set(rows[0]) == LIST_KEYS
    assert rows[1] == {
        **first,
        "provider_id": world.provider_id,
        "application_name": "Agent",
        "resource_name": "Mail",
        "provider_name": "Okta",
        "provider_kind": "none",
    }


async def test_list_includes_revoked_grants_and_rows_of_archived_parents(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """All statuses unless filtered; an archived application still lends its name."""
    world = await grant_world(client, admin, engine)
    grant = await made_grant(client, admin, world)
    assert (
        await client.delete(f"/v1/zones/{world.zone_id}/grants/{grant['id']}", headers=admin)
    ).status_code == 204
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE applications SET archived_at = now()"))
    (row,) = await _list(client, admin, world.zone_id)
    assert (row["status"], row["application_name"]) == ("revoked", "Agent")


async def test_list_is_empty_for_a_missing_zone_and_holds_only_the_zones_grants(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    world = await grant_world(client, admin, engine)
    await made_grant(client, admin, world)
    other = await grant_world(client, admin, engine)
    assert await _list(client, admin, other.zone_id) == []
    assert await _list(client, admin, new_id()) == []


async def _filter_world(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> tuple[GrantWorld, dict[str, str], dict[str, str]]:
    """Grants varying in every filtered field: `named` holds the other application, resource,
    provider, user and scopes; `grants` maps a label to each grant's id."""
    world = await grant_world(client, admin, engine)
    provider = await insert_provider(engine, world.zone_id, name="GitHub", kind="caracal_mandate")
    resource = await insert_resource(
        engine, world.zone_id, provider, ["repo:read", "repo:write"], name="Repo"
    )
    application = await insert_application(engine, world.zone_id, name="Bot")
    named = {"provider": provider, "resource": resource, "application": application}
    grants = {
        "base": (await made_grant(client, admin, world))["id"],
        "user": (await made_grant(client, admin, world, user_id="bob"))["id"],
        "app": (await made_grant(client, admin, world, application_id=application))["id"],
        "repo": (await made_grant(client, admin, world, resource_id=resource, scopes=["repo:read"]))["id"],
        "both": (await made_grant(client, admin, world, scopes=["mail:read", "mail:send"]))["id"],
    }
    revoked = await made_grant(client, admin, world, user_id="bob", scopes=["mail:send"])
    await client.delete(f"/v1/zones/{world.zone_id}/grants/{revoked['id']}", headers=admin)
    grants["revoked"] = revoked["id"]
    return world, named, grants


async def test_every_filter_narrows_the_list(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """application_id, user_id, subject_id, resource_id, provider_id, status, scopes (all must be
    held), and several at once (all must match)."""
    world, named, g = await _filter_world(client, admin, engine)
    expected = {
        f"?application_id={named['application']}": {"app"},
        "?user_id=bob": {"user", "revoked"},
        "?subject_id=bob": {"user", "revoked"},
        "?user_id=user-1&subject_id=bob": {"base", "app", "repo", "both"},  # user_id wins
        f"?resource_id={named['resource']}": {"repo"},
        f"?provider_id={named['provider']}": {"repo"},
        f"?provider_id={world.provider_id}": {"base", "user", "app", "both", "revoked"},
        "?status=revoked": {"revoked"},
        "?status=expired": set(),
        "?scopes=mail:send": {"both", "revoked"},
        "?scopes=mail:send,mail:read": {"both"},
        "?scopes=repo:read": {"repo"},
        "?user_id=bob&status=active&scopes=mail:read": {"user"},
        f"?provider_id={world.provider_id}&application_id={world.application_id}&status=active": {
            "base",
            "user",
            "both",
        },
        "?user_id=nobody": set(),
        "?unknown=1": set(g),  # other keys are ignored
    }
    label = {grant_id: name for name, grant_id in g.items()}
    for query, wanted in expected.items():
        rows = await _list(client, admin, world.zone_id, query)
        assert {label[row["id"]] for row in rows} == wanted, query


@pytest.mark.parametrize(
    "query",
    [
        "?status=gone",
        "?status=",
        "?user_id=",
        "?subject_id=",
        "?application_id=",
        "?resource_id=",
        "?provider_id=",
        "?scopes=",
        "?scopes=mail:read,",
        "?scopes=Mail",
        "?scopes=a%20b",
        "?scopes=" + ",".join(f"s{n}" for n in range(65)),
        "?scopes=" + "x" * 201,
        "?user_id=a%00b",
        "?user_id=ok&subject_id=",
    ],
)
async def test_an_invalid_filter_is_400_invalid_query(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine, query: str
) -> None:
    world = await grant_world(client, admin, engine)
    response = await client.get(f"/v1/zones/{world.zone_id}/grants{query}", headers=admin)
    assert (response.status_code, response.json()["error"]) == (400, "invalid_query"), response.text


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("?limit=0&status=gone", "invalid_query"),
        ("?limit=501", "invalid_query"),
        ("?cursor=not-a-cursor&status=gone", "invalid_cursor"),
    ],
)
async def test_page_errors_come_before_filter_errors(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine, query: str, code: str
) -> None:
    world = await grant_world(client, admin, engine)
    response = await client.get(f"/v1/zones/{world.zone_id}/grants{query}", headers=admin)
    assert (response.status_code, response.json()["error"]) == (400, code)


async def test_pages_follow_the_link_which_keeps_the_filters(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """Filtered pages of 2 walk every matching grant once; each Link keeps the filters in order."""
    world = await grant_world(client, admin, engine)
    wanted = [(await made_grant(client, admin, world, user_id="pager"))["id"] for _ in range(5)]
    await made_grant(client, admin, world, user_id="someone-else")
    url: str | None = f"/v1/zones/{world.zone_id}/grants?user_id=pager&status=active&limit=2"
    seen: list[str] = []
    links: list[str] = []
    while url is not None:
        response = await client.get(url, headers=admin)
        assert response.status_code == 200
        seen += [row["id"] for row in response.json()]
        link = response.headers.get("link")
        links.append(link or "")
        url = link[1 : link.index(">")] if link else None
    assert seen == wanted[::-1]
    assert links[0].startswith(
        f"</v1/zones/{world.zone_id}/grants?user_id=pager&status=active&limit=2&cursor="
    )
    assert links[-1] == ""  # the last page is short: no Link


async def test_selective_filters_read_through_their_index(
    engine: AsyncEngine, client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """In a zone of 20,000 grants (200 applications, resources and providers; 2,000 users), a filtered page
    reads through that filter's index, not the whole zone's page index."""
    zone_id = (await make_zone(client, admin))["id"]
    async with engine.begin() as conn:
        for statement in _BULK_GRANTS:
            await conn.execute(text(statement), {"zone_id": zone_id})
    expected = {
        "user_id": ("user-7", "delegated_grants_user_idx"),
        "application_id": ("app-3", "delegated_grants_application_idx"),
        "resource_id": ("res-3", "delegated_grants_resource_idx"),
        # the provider's resources (a small table here), then their grants through the resource index
        "provider_id": ("prov-3", "delegated_grants_resource_idx"),
    }
    for name, (value, index) in expected.items():
        query = _page_query(frozenset({name}))
        statement, params = query.statement(Page(200), zone_id=zone_id, **{name: value})
        compiled = statement.params(**params).compile(
            dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}
        )
        async with engine.connect() as conn:
            plan = "\n".join((await conn.execute(text(f"EXPLAIN {compiled}"))).scalars())
        assert index in plan, plan


_BULK_GRANTS = (
    "INSERT INTO providers (id, zone_id, name, identifier, provider_kind)"
    " SELECT 'prov-' || n, :zone_id, 'P ' || n, 'provider://p' || n, 'none'"
    " FROM generate_series(0, 199) AS n",
    "INSERT INTO applications (id, zone_id, name, registration_method)"
    " SELECT 'app-' || n, :zone_id, 'App ' || n, 'managed' FROM generate_series(0, 199) AS n",
    "INSERT INTO resources (id, zone_id, name, identifier, credential_provider_id, scopes)"
    " SELECT 'res-' || n, :zone_id, 'Res ' || n, 'https://r' || n || '.example', 'prov-' || n, '{a}'"
    " FROM generate_series(0, 199) AS n",
    "INSERT INTO delegated_grants (id, zone_id, application_id, user_id, resource_id, scopes)"
    " SELECT gen_random_uuid()::text, :zone_id, 'app-' || n % 200, 'user-' || n % 2000,"
    " 'res-' || n / 100, '{a}' FROM generate_series(0, 19999) AS n",
    "ANALYZE delegated_grants",
    "ANALYZE resources",
    "ANALYZE providers",
)
