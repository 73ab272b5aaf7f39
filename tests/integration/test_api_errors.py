"""Error bodies (problem+json), unknown routes, 405, 413, response headers, and no input yielding a 500."""

from __future__ import annotations

import json
import random
import re
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, get_args

import httpx
import msgspec
import pytest
from litestar import Litestar, post
from litestar.routes import HTTPRoute
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from caracal_api.errors import handle_exception
from caracal_api.resources import Resources
from tests.app_pool import route_table
from tests.integration.api_helpers import app_with, count_rows, make_zone

PROBLEM_KEYS = {"error", "type", "title", "status", "detail"}
UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def assert_problem(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert set(body) >= PROBLEM_KEYS, body
    assert (body["error"], body["status"]) == (code, status)
    assert (
        isinstance(body["title"], str) and isinstance(body["detail"], str) and isinstance(body["type"], str)
    )
    if code not in ("invalid_body", "internal_error"):  # the contract fixes those two descriptions
        assert body["error_description"] == body["detail"], body


async def test_failures_answer_problem_json_with_the_contract_code(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """401, 400, 403, 404 and 409 bodies carry error plus type, title, status and detail."""
    zone = await make_zone(client, admin, slug="taken")
    assert_problem(await client.get("/v1/zones"), 401, "invalid_admin_token")
    assert_problem(await client.post("/v1/zones", json={"nam": "x"}, headers=admin), 400, "invalid_zone")
    assert_problem(await client.get("/v1/zones?limit=0", headers=admin), 400, "invalid_query")
    assert_problem(await client.get(f"/v1/zones/{uuid.uuid4()}", headers=admin), 404, "zone_not_found")
    assert_problem(await client.patch(f"/v1/zones/{zone['id']}", json={}, headers=admin), 400, "no_fields")
    conflict = await client.post("/v1/zones", json={"name": "x", "slug": "taken"}, headers=admin)
    assert_problem(conflict, 409, "zone_slug_conflict")
    zone_token = await client.post(
        "/v1/admin-tokens", json={"name": "z", "scope": "zone", "zone_id": zone["id"]}, headers=admin
    )
    scoped = {"Authorization": f"Bearer {zone_token.json()['token']}"}
    assert_problem(await client.get("/v1/zones", headers=scoped), 403, "admin_token_zone_mismatch")


@pytest.mark.parametrize("path", ["/v1/nope", "/v1/zones/a/b/c", "/nope", "/v1"])
async def test_unknown_route_is_404_in_the_original_shape(
    client: httpx.AsyncClient, admin: dict[str, str], path: str
) -> None:
    """An unmatched URL answers 404 with the original's message and statusCode members."""
    response = await client.get(path, headers=admin)
    assert_problem(response, 404, "Not Found")
    body = response.json()
    assert (body["message"], body["statusCode"]) == (f"Route GET:{path} not found", 404)


@pytest.mark.parametrize(
    ("method", "path"),
    [("PUT", "/v1/zones"), ("DELETE", "/v1/zones"), ("POST", "/v1/zones/abc"), ("POST", "/health")],
)
async def test_wrong_method_is_405(
    client: httpx.AsyncClient, admin: dict[str, str], method: str, path: str
) -> None:
    """A known path with an unsupported method answers 405 problem+json naming the allowed methods."""
    response = await client.request(method, path, headers=admin)
    assert_problem(response, 405, "method_not_allowed")
    assert "GET" in response.headers["allow"]


@pytest.fixture
async def small_body_app(client: httpx.AsyncClient, resources: Resources) -> AsyncIterator[httpx.AsyncClient]:
    async with app_with(resources, body_limit_bytes=2048) as (http,):
        yield http


async def test_body_over_the_limit_is_413_and_writes_nothing(
    small_body_app: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """A body over API_BODY_LIMIT_BYTES answers 413, with or without Content-Length; one under it passes."""
    big = json.dumps({"name": "x" * 3000}).encode()
    assert_problem(
        await small_body_app.post("/v1/zones", content=big, headers=admin), 413, "payload_too_large"
    )

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(big), 500):
            yield big[start : start + 500]

    streamed = await small_body_app.post("/v1/zones", content=chunks(), headers=admin)
    assert_problem(streamed, 413, "payload_too_large")
    assert await count_rows(engine, "zones") == 0
    fits = await small_body_app.post("/v1/zones", json={"name": "x" * 1900}, headers=admin)
    assert fits.status_code == 201


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "image/png"])
async def test_non_json_body_is_400_or_415_never_500(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine, content_type: str
) -> None:
    """A body that is not JSON gets the route's 400 code or 415."""
    headers = {**admin, "content-type": content_type}
    response = await client.post("/v1/zones", content=b"name=acme", headers=headers)
    assert response.status_code in (400, 415), response.text
    assert response.json()["error"] in ("invalid_zone", "unsupported_media_type")
    assert await count_rows(engine, "zones") == 0


@pytest.mark.parametrize("path", ["/health", "/v1/zones", "/nope", "/v1/nope", "/metrics"])
async def test_every_response_carries_a_generated_request_id(client: httpx.AsyncClient, path: str) -> None:
    """Without x-request-id the response carries a fresh UUID, different each time."""
    first, second = await client.get(path), await client.get(path)
    assert UUID4.match(first.headers["x-request-id"]) and UUID4.match(second.headers["x-request-id"])
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


@pytest.mark.parametrize("request_id", ["abc", "A-Z_a.z:09", "r" * 128])
async def test_valid_request_id_is_echoed(
    client: httpx.AsyncClient, admin: dict[str, str], request_id: str
) -> None:
    """An incoming x-request-id matching the pattern comes back unchanged, on success and failure."""
    for response in (
        await client.get("/v1/zones", headers={**admin, "x-request-id": request_id}),
        await client.get("/v1/zones", headers={"x-request-id": request_id}),
    ):
        assert response.headers["x-request-id"] == request_id


@pytest.mark.parametrize("request_id", ["has space", "r" * 129, "a/b", "a,b", ""])
async def test_invalid_request_id_is_replaced_by_a_uuid(client: httpx.AsyncClient, request_id: str) -> None:
    """An x-request-id outside ^[A-Za-z0-9_.\\-:]{1,128}$ is replaced by a generated UUID."""
    response = await client.get("/health", headers={"x-request-id": request_id})
    assert UUID4.match(response.headers["x-request-id"])


async def test_v1_responses_carry_the_security_headers(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """/v1 answers (2xx, 204, 4xx, unknown routes) carry nosniff, no-referrer and no-store."""
    zone = await make_zone(client, admin)
    for response in (
        await client.get("/v1/zones", headers=admin),
        await client.delete(f"/v1/zones/{zone['id']}", headers=admin),
        await client.get("/v1/zones"),
        await client.get("/v1/nope", headers=admin),
        await client.post("/v1/zones", json=[], headers=admin),
    ):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["cache-control"] == "no-store"


STRINGS = ["", "a", "Acme Corp", "a\u0000b", "\u0000", "ä-ö", "\U0001f600", "-", " ", "x" * 300]
# per field: (valid values, edge values); a body takes a valid value two times in three
FIELDS: dict[str, tuple[list[Any], list[Any]]] = {
    "name": (["a", "Acme Corp", "ä-ö", "\U0001f600", " "], ["", "a\u0000b", "\u0000", "n" * 121, None, 3]),
    "slug": (["acme", "a-b-9", "-"], ["", "A", "a b", "a\u0000", "ab" * 1500, None]),
    "dcr_enabled": ([True, False], ["true", 1, 0, None]),
    "dcr_shutdown": (["keep_live", "revoke_live"], ["kill", None]),
    "scope": (["global", "zone"], ["org", None]),
    "zone_id": (["{zone}"], ["nope", "\u0000", "", "z" * 129, None, 7]),
    "capability": (["read", "write", "approve"], ["root", None]),
}


def random_value(rng: random.Random, depth: int = 0) -> Any:
    """Any JSON value: scalars at the edges of their types, nested arrays and objects."""
    kind = rng.randrange(8 if depth < 2 else 5)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        return rng.choice([0, -1, 2**63, 10**30, 0.5, -1e308, rng.randint(-1000, 1000)])
    if kind in (2, 3, 4):
        return rng.choice(
            [*STRINGS, "".join(chr(rng.randrange(1, 0x2FFF)) for _ in range(rng.randrange(12)))]
        )
    if kind == 5:
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice([*FIELDS, "x"]): random_value(rng, depth + 1) for _ in range(rng.randrange(5))}


def random_body(
    rng: random.Random, fields: list[str], zone_id: str, value: Callable[[random.Random, str], Any]
) -> bytes:
    """Random bytes, a random JSON value, or (mostly) an object of the route's fields with edge values."""
    roll = rng.random()
    if roll < 0.1:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(40)))
    if roll < 0.25:
        return json.dumps(random_value(rng)).encode()
    body = {key: value(rng, key) for key in fields if rng.random() < 0.6}
    if rng.random() < 0.1:
        body["x"] = random_value(rng)
    return json.dumps(body).replace('"{zone}"', json.dumps(zone_id)).encode()


@dataclass(frozen=True)
class BodyRoute:
    method: str
    path: str  # with `{name}` placeholders
    fields: list[str]


def body_routes(app: Litestar) -> list[BodyRoute]:
    """Every route of the app's route table that takes a JSON body, with its body Struct's fields."""
    found = []
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for method, (handler, _) in route.route_handler_map.items():
            data = handler.parsed_fn_signature.parameters.get("data")
            if data is None:
                continue
            structs = [t for t in get_args(data.annotation) or (data.annotation,) if isinstance(t, type)]
            fields = [
                f.name for t in structs if issubclass(t, msgspec.Struct) for f in msgspec.structs.fields(t)
            ]
            found.append(BodyRoute(method, route.path_format, fields))
    return found


def fill(rng: random.Random, path: str, zone_id: str) -> str:
    """Path parameters: the test's zone (mostly) or ids that exist nowhere."""
    values = {
        name: zone_id if name == "zone_id" and rng.random() < 0.8 else str(uuid.uuid4())
        for name in re.findall(r"{(\w+)}", path)
    }
    return path.format(**values)


def field_value(rng: random.Random, key: str) -> Any:
    if key not in FIELDS:
        return random_value(rng)
    return rng.choice(FIELDS[key][0] if rng.random() < 0.67 else FIELDS[key][1])


async def test_random_bodies_never_get_a_500_and_failures_write_no_event(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine, resources: Resources
) -> None:
    """Fuzz every route with a body (read from the route table, so new routes join by themselves):
    random JSON and bytes answer < 500 with problem+json, and a failure writes no event."""
    rng = random.Random(20261124)
    zone = await make_zone(client, admin)
    targets = body_routes(route_table(resources))
    assert {(t.method, t.path) for t in targets} >= {("POST", "/v1/zones"), ("PATCH", "/v1/zones/{zone_id}")}
    headers = {**admin, "content-type": "application/json"}
    events, outcomes = await count_rows(engine, "event_outbox"), set()
    for _ in range(100 * len(targets)):
        target = rng.choice(targets)
        path = fill(rng, target.path, zone["id"])
        body = random_body(rng, target.fields, zone["id"], field_value)
        response = await client.request(target.method, path, content=body, headers=headers)
        assert response.status_code < 500, (target.method, path, body, response.text)
        now = await count_rows(engine, "event_outbox")
        if not response.is_success:
            assert now == events, (target.method, path, body, response.status_code)
            assert response.headers["content-type"] == "application/problem+json"
        events = now
        outcomes.add((target.method, target.path, response.status_code))
    assert {(method, path) for method, path, _ in outcomes} == {(t.method, t.path) for t in targets}
    assert {
        ("POST", "/v1/zones", 201),
        ("PATCH", "/v1/zones/{zone_id}", 200),
        ("POST", "/v1/zones", 409),
    } <= outcomes


async def test_options_lists_every_method_of_the_path(client: httpx.AsyncClient) -> None:
    """OPTIONS names all of a path's methods, also where several handlers share the path."""
    collection = await client.options("/v1/zones")
    assert (collection.status_code, collection.headers["allow"]) == (204, "GET, OPTIONS, POST")
    one = await client.options(f"/v1/zones/{uuid.uuid4()}")
    assert (one.status_code, one.headers["allow"]) == (204, "DELETE, GET, OPTIONS, PATCH")
    assert (await client.options("/v1/nowhere")).status_code == 404


async def test_a_value_the_database_refuses_answers_the_routes_own_400_code(engine: AsyncEngine) -> None:
    """A class-22 data error on a route with a body code is that code (400), not invalid_input or 500."""

    @post("/probe", opt={"body_error": "invalid_probe"})
    async def probe() -> None:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 'not a number'::int"))

    @post("/plain")
    async def plain() -> None:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 'not a number'::int"))

    app = Litestar([probe, plain], exception_handlers={Exception: handle_exception})
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://probe.test") as http:
        assert_problem(await http.post("/probe"), 400, "invalid_probe")
        assert_problem(await http.post("/plain"), 400, "invalid_input")
