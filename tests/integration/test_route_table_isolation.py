"""Zone isolation, proved for every zone-scoped route the app has: the routes come from its route table.

A new `/v1/zones/{zone_id}/…` route is covered without editing this file, as long as each of its path
parameters has a maker in OBJECT_MAKERS. To extend it with a new aggregate, add one line there:

    OBJECT_MAKERS["application_id"] = make_application   # async (client, admin, zone_id) -> id

The maker creates one object of that kind in the given zone through the API and returns its id.
Objects only other services create (the STS's step-up challenges, the ingester's audit rows) have a
ROW_MAKERS entry instead: async (engine, zone_id) -> id, writing the rows as that service would.
A route whose path parameter has no maker fails `test_every_zone_scoped_path_parameter_has_a_maker`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
from litestar import Litestar
from litestar.routes import HTTPRoute
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from caracal_api.resources import Resources
from tests.app_pool import route_table
from tests.integration.api_helpers import (
    ALLOW_READS,
    bearer,
    make_active_version,
    make_application,
    make_grant,
    make_policy,
    make_policy_set,
    make_provider,
    make_resource,
    make_token,
    make_zone,
    settle,
)
from tests.integration.people_rows import make_challenge, make_invitation, make_request_events, make_team
from tests.integration.session_rows import make_session

ObjectMaker = Callable[[httpx.AsyncClient, dict[str, str], str], Awaitable[str]]
# Path parameter -> how to create one object of that kind in a zone (zone_id is the zone itself).
OBJECT_MAKERS: dict[str, ObjectMaker] = {}
OBJECT_MAKERS["application_id"] = make_application
OBJECT_MAKERS["provider_id"] = make_provider
OBJECT_MAKERS["resource_id"] = make_resource
OBJECT_MAKERS["grant_id"] = make_grant
OBJECT_MAKERS["policy_id"] = make_policy
OBJECT_MAKERS["policy_set_id"] = make_policy_set  # with an active version
OBJECT_MAKERS["version_id"] = make_active_version  # of the zone's newest policy set
OBJECT_MAKERS["team_id"] = make_team
OBJECT_MAKERS["invitation_id"] = make_invitation
RowMaker = Callable[[AsyncEngine, str], Awaitable[str]]
# Path parameter -> how to write one such object of another service into a zone's rows.
ROW_MAKERS: dict[str, RowMaker] = {}
ROW_MAKERS["challenge_id"] = make_challenge
ROW_MAKERS["session_id"] = make_session
ROW_MAKERS["request_id"] = make_request_events
ZONE_PREFIX = "/v1/zones/{zone_id}"
# (method, path) -> a body passing the route's own checks, where `{}` would not: the contract answers a
# PATCH without fields 400 no_fields before looking the object up, so `{}` would hide the 404.
MANIFEST = {"manifest": [{"policy_version_id": "v"}]}
REQUEST_BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("PATCH", ZONE_PREFIX + "/applications/{application_id}"): {"name": "renamed"},
    ("PATCH", ZONE_PREFIX + "/providers/{provider_id}"): {"name": "renamed"},
    ("PATCH", ZONE_PREFIX + "/teams/{team_id}"): {"name": "renamed"},
    ("POST", ZONE_PREFIX + "/step-up-challenges/{challenge_id}/satisfy"): {"approver_subject_id": "approver"},
    ("POST", ZONE_PREFIX + "/policies/{policy_id}/versions"): {"content": ALLOW_READS},
    ("POST", ZONE_PREFIX + "/policy-sets/{policy_set_id}/versions"): MANIFEST,
    ("POST", ZONE_PREFIX + "/policy-sets/{policy_set_id}/simulate"): {"version_id": "x"},
    ("POST", ZONE_PREFIX + "/policy-sets/{policy_set_id}/activate"): {"version_id": "x"},
}
# Tables a refused request may legitimately write: its audit row and the token's last use.
REQUEST_BOOKKEEPING = ("admin_audit_events", "admin_tokens")


@dataclass(frozen=True)
class ZoneRoute:
    method: str
    path: str  # with `{name}` placeholders

    @property
    def params(self) -> list[str]:
        return [part[1:-1] for part in self.path.split("/") if part.startswith("{")]

    def url(self, values: dict[str, str]) -> str:
        return self.path.format(**values)


def zone_scoped_routes(app: Litestar) -> list[ZoneRoute]:
    """Every method of every route under /v1/zones/{zone_id}, read from the app's route table."""
    found = []
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        path = route.path_format
        if path != ZONE_PREFIX and not path.startswith(ZONE_PREFIX + "/"):
            continue
        # A public route takes no admin token (the OAuth callback), so no token can be refused there:
        # its zone comes from the state it spends, which test_oauth_callback.py keeps to its zone.
        methods = {m for h in route.route_handlers if not h.opt.get("public") for m in h.http_methods}
        found += [ZoneRoute(method, path) for method in sorted(methods - {"OPTIONS", "HEAD"})]
    return found


@dataclass
class ZoneWorld:
    """Zone `mine` and zone `theirs`, one object of every registered kind in each, and their tokens."""

    mine: dict[str, str]  # path parameter -> id, zone_id included
    theirs: dict[str, str]
    my_token: dict[str, str]
    their_token: dict[str, str]


async def populated_zone(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine, name: str
) -> dict[str, str]:
    zone_id = (await make_zone(client, admin, name=name))["id"]
    objects = {"zone_id": zone_id}
    for param, make in OBJECT_MAKERS.items():
        objects[param] = await make(client, admin, zone_id)
    for param, write in ROW_MAKERS.items():
        objects[param] = await write(engine, zone_id)
    return objects


async def zone_world(client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine) -> ZoneWorld:
    mine = await populated_zone(client, admin, engine, "Mine")
    theirs = await populated_zone(client, admin, engine, "Theirs")
    tokens = [
        bearer((await make_token(client, admin, scope="zone", zone_id=zone["zone_id"]))["token"])
        for zone in (mine, theirs)
    ]
    return ZoneWorld(mine, theirs, tokens[0], tokens[1])


async def state_of(engine: AsyncEngine) -> dict[str, str]:
    """A digest of every table's rows (but request bookkeeping): equal digests, nothing changed."""
    async with engine.connect() as conn:
        tables = (
            await conn.execute(
                text(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                    " AND tablename <> ALL(:skip) ORDER BY 1"
                ),
                {"skip": [*REQUEST_BOOKKEEPING, "alembic_version"]},
            )
        ).scalars()
        digest = "SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM \"{}\" t"
        return {
            table: (await conn.execute(text(digest.format(table)))).scalar_one() for table in list(tables)
        }


def app_routes(resources: Resources) -> list[ZoneRoute]:
    return zone_scoped_routes(route_table(resources))


async def request(
    client: httpx.AsyncClient, route: ZoneRoute, url: str, token: dict[str, str]
) -> httpx.Response:
    body = (
        REQUEST_BODIES.get((route.method, route.path), {})
        if route.method in ("POST", "PUT", "PATCH")
        else None
    )
    return await client.request(route.method, url, json=body, headers=token)


async def test_the_route_table_holds_the_zone_scoped_routes(resources: Resources) -> None:
    """The generator sees the zone's own routes, so the isolation tests below run over real routes."""
    routes = {(route.method, route.path) for route in app_routes(resources)}
    assert {
        ("GET", ZONE_PREFIX),
        ("PATCH", ZONE_PREFIX),
        ("DELETE", ZONE_PREFIX),
        ("GET", ZONE_PREFIX + "/dcr-status"),
    } <= routes


async def test_every_zone_scoped_path_parameter_has_a_maker(resources: Resources) -> None:
    """A new zone-scoped route with an object id in its path needs a maker in OBJECT_MAKERS."""
    missing = {
        (route.method, route.path, param)
        for route in app_routes(resources)
        for param in route.params
        if param != "zone_id" and param not in OBJECT_MAKERS and param not in ROW_MAKERS
    }
    assert not missing, f"add these path parameters to OBJECT_MAKERS: {sorted(missing)}"


async def test_another_zones_token_gets_403_on_every_zone_scoped_route(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine, resources: Resources
) -> None:
    """Each zone-scoped route answers 403 admin_token_zone_mismatch to another zone's token; no change."""
    world = await zone_world(client, admin, engine)
    before = await state_of(engine)
    for route in app_routes(resources):
        response = await request(client, route, route.url(world.mine), world.their_token)
        assert response.status_code == 403, (route, response.text)
        assert response.json()["error"] == "admin_token_zone_mismatch", (route, response.text)
    await settle(resources)
    assert await state_of(engine) == before


async def test_own_zone_paths_holding_another_zones_object_get_404(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine, resources: Resources
) -> None:
    """In its own zone's path, another zone's object id is 404 (zone or global token); nothing changes."""
    world = await zone_world(client, admin, engine)
    checked = 0
    before = await state_of(engine)
    for route in app_routes(resources):
        for param in (p for p in route.params if p != "zone_id"):
            url = route.url({**world.mine, param: world.theirs[param]})
            for token in (world.my_token, admin):
                response = await request(client, route, url, token)
                assert response.status_code == 404, (route, param, response.text)
                checked += 1
    await settle(resources)
    assert await state_of(engine) == before
    assert checked == 2 * sum(len(route.params) - 1 for route in app_routes(resources))


async def test_zone_scoped_lists_never_show_another_zones_rows(
    client: httpx.AsyncClient, admin: dict[str, str], resources: Resources
) -> None:
    """Every zone-scoped GET that answers a list holds only its zone's rows, for zone and global tokens."""
    world = await zone_world(client, admin, resources.engine)
    foreign = set(world.theirs.values())
    reads = 0
    for route in (r for r in app_routes(resources) if r.method == "GET"):
        for token in (world.my_token, admin):
            response = await client.get(route.url(world.mine), headers=token)
            assert response.status_code == 200, (route, response.text)
            rows: Any = response.json()
            reads += 1
            if not isinstance(rows, list):
                assert rows.get("id") not in foreign, (route, rows)
                continue
            assert all(row.get("id") not in foreign for row in rows), (route, rows)
            assert all(row.get("zone_id", world.mine["zone_id"]) == world.mine["zone_id"] for row in rows)
    assert reads >= 2
