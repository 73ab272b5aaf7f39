"""Conditional requests, proved for every route of the app's route table: every single-object GET
answers a strong ETag of its bytes, and every PATCH and DELETE honours If-Match (412 when stale,
nothing written) and behaves as before without it.

The objects come from the zone-isolation test's makers (test_route_table_isolation.OBJECT_MAKERS), so
a new aggregate with a maker there is covered here too; a new PATCH route needs a `name` field (or an
entry in PATCH_BODIES).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
from litestar import Litestar
from litestar.routes import HTTPRoute
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from caracal.etags import etag_of_bytes
from caracal_api.resources import Resources
from tests.app_pool import route_table
from tests.integration.api_helpers import make_token, settle
from tests.integration.test_route_table_isolation import ZONE_PREFIX, ZoneRoute, populated_zone, state_of
from tests.integration.wire_budget import ADMIN, Counted, measure, warm

STALE = '"0000000000000000000000000000000000000000000000000000000000000000"'
# (path) -> the body of the n-th PATCH of that route: each differs, so every PATCH changes the object.
PATCH_BODIES: dict[str, Callable[[int], dict[str, Any]]] = {}
Objects = dict[str, str]


def v1_routes(app: Litestar, methods: set[str]) -> list[ZoneRoute]:
    """Every /v1 route with one of these methods (public ones take no token and write nothing here)."""
    found = []
    for route in app.routes:
        if not isinstance(route, HTTPRoute) or not route.path_format.startswith("/v1/"):
            continue
        handlers = [h for h in route.route_handlers if not h.opt.get("public")]
        found += [
            ZoneRoute(m, route.path_format) for h in handlers for m in sorted(set(h.http_methods) & methods)
        ]
    return found


def routes_of(resources: Resources, methods: set[str]) -> list[ZoneRoute]:
    return v1_routes(route_table(resources), methods)


def single_object_gets(resources: Resources) -> list[ZoneRoute]:
    """A GET whose path ends in an object's id reads that one object."""
    return [route for route in routes_of(resources, {"GET"}) if route.path.endswith("}")]


def patch_body(path: str, n: int) -> dict[str, Any]:
    return PATCH_BODIES.get(path, lambda i: {"name": f"renamed {i}"})(n)


async def world(client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine, name: str) -> Objects:
    """One object of every kind (the isolation test's), a zone-scoped admin token and an outbox event."""
    objects = await populated_zone(client, admin, engine, name)
    objects["token_id"] = (await make_token(client, admin, scope="zone", zone_id=objects["zone_id"]))["id"]
    async with engine.connect() as conn:
        objects["event_id"] = (await conn.execute(text("SELECT id FROM event_outbox LIMIT 1"))).scalar_one()
    return objects


async def current_tag(client: httpx.AsyncClient, admin: dict[str, str], path: str) -> str:
    """The object's GET ETag; an object without a GET one is tagged as its list shows it."""
    got = await client.get(path, headers=admin)
    if got.status_code != 405:
        assert got.status_code == 200, got.text
        return str(got.headers["etag"])
    parent, _, object_id = path.rpartition("/")
    listed = await client.get(parent, params={"limit": 500}, headers=admin)
    item = next(row for row in listed.json() if row["id"] == object_id)
    return etag_of_bytes(json.dumps(item, separators=(",", ":"), ensure_ascii=False).encode())


async def successful_audit_rows(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        query = text("SELECT count(*) FROM admin_audit_events WHERE status_code < 400")
        return int((await conn.execute(query)).scalar_one())


async def send(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    route: ZoneRoute,
    url: str,
    if_match: str | None,
    n: int = 0,
) -> httpx.Response:
    headers = {**admin, **({"If-Match": if_match} if if_match is not None else {})}
    body = patch_body(route.path, n) if route.method == "PATCH" else None
    return await client.request(route.method, url, json=body, headers=headers)


async def test_the_route_table_holds_conditional_routes(resources: Resources) -> None:
    """The generators see real routes, so the tests below run over the app's own table."""
    gets = {route.path for route in single_object_gets(resources)}
    writes = {(route.method, route.path) for route in routes_of(resources, {"PATCH", "DELETE"})}
    assert {ZONE_PREFIX, ZONE_PREFIX + "/applications/{application_id}", "/v1/outbox/{event_id}"} <= gets
    assert {("PATCH", ZONE_PREFIX), ("DELETE", "/v1/admin-tokens/{token_id}")} <= writes


async def test_every_single_object_get_answers_a_strong_etag_of_its_bytes_that_stays_until_a_change(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine, resources: Resources
) -> None:
    """Quoted hex SHA-256 of the body, never weak, the same on a second read of an unchanged object."""
    objects = await world(client, admin, engine, "Tagged")
    for route in single_object_gets(resources):
        first, second = [await client.get(route.url(objects), headers=admin) for _ in range(2)]
        assert first.status_code == 200, (route, first.text)
        assert first.headers["etag"] == etag_of_bytes(first.content), route
        assert second.headers["etag"] == first.headers["etag"], route


async def test_a_stale_or_weak_if_match_is_412_on_every_patch_and_delete_and_writes_nothing(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine, resources: Resources
) -> None:
    """No row, outbox entry or audit row of a mutation: only the refused request's own audit row."""
    objects = await world(client, admin, engine, "Stale")
    for route in routes_of(resources, {"PATCH", "DELETE"}):
        url = route.url(objects)
        weak = "W/" + await current_tag(client, admin, url)
        await settle(resources)
        before, audited = await state_of(engine), await successful_audit_rows(engine)
        for if_match in (STALE, weak, f"{STALE}, {weak}"):
            refused = await send(client, admin, route, url, if_match)
            assert (refused.status_code, refused.json()["error"]) == (412, "precondition_failed"), route
            assert "etag" not in refused.headers
        await settle(resources)
        assert await state_of(engine) == before, route
        assert await successful_audit_rows(engine) == audited, route


async def test_every_patch_with_the_current_tag_or_star_succeeds_and_moves_the_tag(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine, resources: Resources
) -> None:
    """The PATCH answers the new ETag, which the next GET answers too; without If-Match as before."""
    objects = await world(client, admin, engine, "Patched")
    for route in routes_of(resources, {"PATCH"}):
        url = route.url(objects)
        for n, if_match in enumerate([await current_tag(client, admin, url), "*", None]):
            before = await current_tag(client, admin, url)
            patched = await send(client, admin, route, url, if_match, n)
            assert patched.status_code == 200, (route, if_match, patched.text)
            assert patched.headers["etag"] == etag_of_bytes(patched.content) != before, route
            assert await current_tag(client, admin, url) == patched.headers["etag"], route


async def delete_all(
    client: httpx.AsyncClient, admin: dict[str, str], objects: Objects, resources: Resources, star: bool
) -> None:
    """DELETE every object conditionally, children before parents (a 409 waits for the next pass)."""
    pending = sorted(routes_of(resources, {"DELETE"}), key=lambda route: -len(route.params))
    while pending:
        left = []
        for route in pending:
            url = route.url(objects)
            tag = "*" if star else await current_tag(client, admin, url)
            deleted = await send(client, admin, route, url, tag)
            assert deleted.status_code in (204, 409), (route, deleted.text)
            if deleted.status_code == 409:
                left.append(route)
        assert len(left) < len(pending), f"no DELETE succeeded: {left}"
        pending = left


async def test_every_delete_with_the_current_tag_or_star_succeeds(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine, resources: Resources
) -> None:
    """A DELETE whose If-Match holds the object's tag, or `*`, does what it does unconditionally."""
    for star in (False, True):
        objects = await world(client, admin, engine, f"Deleted {star}")
        await delete_all(client, admin, objects, resources, star)
        assert (await client.get(f"/v1/zones/{objects['zone_id']}", headers=admin)).status_code == 404


async def test_two_concurrent_patches_with_the_same_if_match_exactly_one_wins(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine, resources: Resources
) -> None:
    """The row is locked before its tag is compared: the second sees the first's change and gets 412."""
    objects = await world(client, admin, engine, "Raced")
    for route in routes_of(resources, {"PATCH"}):
        url = route.url(objects)
        tag = await current_tag(client, admin, url)
        answers = await asyncio.gather(*[send(client, admin, route, url, tag, n) for n in (1, 2)])
        assert sorted(answer.status_code for answer in answers) == [200, 412], route
        winner = next(answer for answer in answers if answer.status_code == 200)
        assert await current_tag(client, admin, url) == winner.headers["etag"], route


async def round_trips(counted: Counted, method: str, url: str, body: Any, headers: dict[str, str]) -> int:
    await warm(counted)
    counted.wire.reset()
    answer = await counted.http.request(method, url, json=body, headers={**ADMIN, **headers})
    assert answer.status_code == 200, answer.text
    await counted.resources.settled()
    return counted.wire.total


async def test_a_tagged_get_stays_one_round_trip_and_if_match_adds_two_to_a_write(
    counted: Counted, engine: AsyncEngine
) -> None:
    """The tag is computed from the encoded body; the lock and the read happen only with If-Match."""
    objects = await world(counted.http, ADMIN, engine, "Counted")
    for route in single_object_gets(counted.resources):
        assert await measure(counted, "GET", route.url(objects)) <= 1, route
    # a resource's PATCH is one transaction with or without If-Match (a zone's plain PATCH is one
    # statement in autocommit, and with If-Match it takes the transaction: test_request_path)
    resource = f"/v1/zones/{objects['zone_id']}/resources/{objects['resource_id']}"
    plain = await round_trips(counted, "PATCH", resource, {"name": "plain"}, {})
    tag = (await counted.http.get(resource, headers=ADMIN)).headers["etag"]
    assert await round_trips(counted, "PATCH", resource, {"name": "tagged"}, {"If-Match": tag}) == plain + 2
