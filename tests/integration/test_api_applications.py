"""/v1/zones/{z}/applications against real Postgres and Redis: managed create, reads, PATCH, delete,
rotate-secret; the stored hash checked with raw Argon2id, independently of caracal.passwords."""

from __future__ import annotations

import base64
import hmac
import logging
import re
import uuid
from typing import Any

import httpx
import pytest
from argon2.low_level import Type, hash_secret_raw
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from caracal.passwords import verify_client_secret
from tests.integration.api_helpers import bearer, make_application, make_token, make_zone, outbox

ISO_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
APP_KEYS = {"id", "zone_id", "name", "registration_method", "expires_at", "created_at"}
INTERNALS = {"x-caracal-application-internals": "control"}
MISSING = "01900000-0000-7000-8000-000000000000"


def apps(zone_id: str) -> str:
    return f"/v1/zones/{zone_id}/applications"


async def create(
    client: httpx.AsyncClient, admin: dict[str, str], zone_id: str, **body: Any
) -> httpx.Response:
    payload = {"name": "App", "registration_method": "managed", **body}
    return await client.post(apps(zone_id), json=payload, headers=admin)


async def stored_hash(engine: AsyncEngine, application_id: str) -> str:
    async with engine.connect() as conn:
        query = text("SELECT client_secret_hash FROM applications WHERE id = :id")
        return str((await conn.execute(query, {"id": application_id})).scalar_one())


def raw_argon2id_verifies(secret: str, stored: str) -> bool:
    """The STS's check, written from the contract: argon2id$<salt>$<hash>, unpadded std base64."""
    prefix, salt_b64, hash_b64 = stored.split("$")
    assert prefix == "argon2id" and "=" not in salt_b64 + hash_b64
    salt = base64.b64decode(salt_b64 + "=" * (-len(salt_b64) % 4))
    expected = base64.b64decode(hash_b64 + "=" * (-len(hash_b64) % 4))
    assert (len(salt), len(expected)) == (16, 32)
    digest = hash_secret_raw(
        secret.encode(), salt, time_cost=3, memory_cost=65536, parallelism=2, hash_len=32, type=Type.ID
    )
    return hmac.compare_digest(digest, expected)


async def test_create_managed_application_answers_201_with_a_46_character_secret(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """POST answers the Application fields plus `cs_` + base64url(32 bytes); no traits in it."""
    zone = await make_zone(client, admin)
    response = await create(client, admin, zone["id"], traits=["team:a"])
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {*APP_KEYS, "client_secret"}
    assert (
        body["zone_id"] == zone["id"] and body["registration_method"] == "managed" and body["name"] == "App"
    )
    assert body["expires_at"] is None and ISO_MS.match(body["created_at"])
    assert uuid.UUID(body["id"]).version == 7
    assert re.fullmatch(r"cs_[A-Za-z0-9_-]{43}", body["client_secret"])


async def test_stored_secret_hash_verifies_with_raw_argon2id_and_the_products_helper(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """client_secret_hash is argon2id$salt16$hash32 (m=65536, t=3, p=2): the STS's format."""
    zone = await make_zone(client, admin)
    body = (await create(client, admin, zone["id"])).json()
    stored = await stored_hash(engine, body["id"])
    assert raw_argon2id_verifies(body["client_secret"], stored)
    assert not raw_argon2id_verifies(body["client_secret"] + "x", stored)
    assert await verify_client_secret(body["client_secret"], stored)
    async with engine.connect() as conn:
        row = (await conn.execute(text("SELECT credential_type, traits FROM applications"))).one()
    assert (row.credential_type, row.traits) == ("token", [])


async def test_traits_are_shown_only_with_the_internals_header(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """GET one and list add `traits` for `x-caracal-application-internals: control` only."""
    zone = await make_zone(client, admin)
    app_id = await make_application(client, admin, zone["id"], traits=["b", "control:x"])
    one, listed = f"{apps(zone['id'])}/{app_id}", apps(zone["id"])
    assert set((await client.get(one, headers=admin)).json()) == APP_KEYS
    assert set((await client.get(listed, headers=admin)).json()[0]) == APP_KEYS
    other = {**admin, "x-caracal-application-internals": "yes"}
    assert "traits" not in (await client.get(one, headers=other)).json()
    assert (await client.get(one, headers={**admin, **INTERNALS})).json()["traits"] == ["b", "control:x"]
    assert (await client.get(listed, headers={**admin, **INTERNALS})).json()[0]["traits"] == [
        "b",
        "control:x",
    ]


async def test_list_is_newest_first_pages_with_link_and_hides_archived(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """Bare array newest first; a full page has a Link; archived applications are gone from it."""
    zone = await make_zone(client, admin)
    ids = [await make_application(client, admin, zone["id"], name=f"a{n}") for n in range(3)]
    first = await client.get(f"{apps(zone['id'])}?limit=2", headers=admin)
    assert [a["id"] for a in first.json()] == ids[::-1][:2]
    link = re.fullmatch(r'<([^>]+)>; rel="next"', first.headers["link"])
    assert link is not None
    rest = await client.get(link.group(1), headers=admin)
    assert [a["id"] for a in rest.json()] == [ids[0]] and "link" not in rest.headers
    assert (await client.delete(f"{apps(zone['id'])}/{ids[1]}", headers=admin)).status_code == 204
    assert [a["id"] for a in (await client.get(apps(zone["id"]), headers=admin)).json()] == [ids[2], ids[0]]
    bad = await client.get(f"{apps(zone['id'])}?limit=0", headers=admin)
    assert (bad.status_code, bad.json()["error"]) == (400, "invalid_query")


async def test_create_in_a_missing_or_archived_zone_is_404_zone_not_found(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """Zone missing or archived: 404 zone_not_found, also before a trait error (contract order)."""
    zone = await make_zone(client, admin)
    await client.delete(f"/v1/zones/{zone['id']}", headers=admin)
    for zone_id in (MISSING, zone["id"]):
        for body in ({}, {"traits": ["1bad"]}):
            response = await create(client, admin, zone_id, **body)
            assert (response.status_code, response.json()["error"]) == (404, "zone_not_found"), body
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM applications"))).scalar_one() == 0


@pytest.mark.parametrize(
    "body",
    [
        {"registration_method": "managed"},
        {"name": "", "registration_method": "managed"},
        {"name": "A"},
        {"name": "A", "registration_method": "dcr"},
        {"name": "A", "registration_method": "managed", "traits": "x"},
        {"name": "A", "registration_method": "managed", "traits": [1]},
        {"name": "A", "registration_method": "managed", "colour": "red"},
        {"name": "A", "registration_method": "managed", "client_secret": "mine"},
        [],
    ],
)
async def test_create_with_a_bad_body_is_400_invalid_application(
    client: httpx.AsyncClient, admin: dict[str, str], body: Any
) -> None:
    """Strict body: name ≥ 1, registration_method exactly "managed", traits strings, nothing else."""
    zone = await make_zone(client, admin)
    response = await client.post(apps(zone["id"]), json=body, headers=admin)
    assert (response.status_code, response.json()["error"]) == (400, "invalid_application")


@pytest.mark.parametrize(
    ("traits", "code"),
    [
        ([f"t{n}" for n in range(33)], "trait_count_exceeded"),
        (["ok", "9lives"], "trait_invalid"),
        (["a" * 129], "trait_invalid"),
        (["a", "a"], "trait_duplicate"),
        (["control:admin"], "trait_forbidden"),
    ],
)
async def test_trait_rules_refuse_with_403_on_create_and_patch_for_zone_tokens(
    client: httpx.AsyncClient, admin: dict[str, str], traits: list[str], code: str
) -> None:
    """Each trait rule answers 403 {error, detail} on POST and PATCH; control: is for global tokens."""
    zone = await make_zone(client, admin)
    zone_token = bearer((await make_token(client, admin, scope="zone", zone_id=zone["id"]))["token"])
    app_id = await make_application(client, admin, zone["id"])
    created = await create(client, zone_token, zone["id"], traits=traits)
    patched = await client.patch(f"{apps(zone['id'])}/{app_id}", json={"traits": traits}, headers=zone_token)
    for response in (created, patched):
        assert (response.status_code, response.json()["error"]) == (403, code)
        assert response.json()["detail"]


async def test_global_tokens_may_set_control_traits(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    """The control namespace is open to a global token, on create and PATCH."""
    zone = await make_zone(client, admin)
    assert (await create(client, admin, zone["id"], traits=["control:admin"])).status_code == 201
    app_id = await make_application(client, admin, zone["id"])
    patched = await client.patch(
        f"{apps(zone['id'])}/{app_id}", json={"traits": ["control"]}, headers={**admin, **INTERNALS}
    )
    assert patched.status_code == 200 and patched.json()["traits"] == ["control"]


async def test_patch_answers_the_full_application_and_replaces_traits(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """PATCH answers the whole Application (DESIGN.md: not only {id, name}); traits are replaced."""
    zone = await make_zone(client, admin)
    app_id = await make_application(client, admin, zone["id"], traits=["a", "b"])
    url = f"{apps(zone['id'])}/{app_id}"
    before = (await client.get(url, headers=admin)).json()
    response = await client.patch(url, json={"name": "Renamed", "traits": ["c"]}, headers=admin)
    assert response.status_code == 200
    assert response.json() == {**before, "name": "Renamed"}
    assert (await client.get(url, headers={**admin, **INTERNALS})).json()["traits"] == ["c"]


async def test_patch_client_secret_replaces_the_secret_the_sts_verifies(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """A caller-chosen client_secret is hashed in the contract's format; the old one stops verifying."""
    zone = await make_zone(client, admin)
    created = (await create(client, admin, zone["id"])).json()
    url = f"{apps(zone['id'])}/{created['id']}"
    response = await client.patch(url, json={"client_secret": "my-own-secret"}, headers=admin)
    assert response.status_code == 200 and "client_secret" not in response.json()
    stored = await stored_hash(engine, created["id"])
    assert raw_argon2id_verifies("my-own-secret", stored)
    assert not raw_argon2id_verifies(created["client_secret"], stored)


@pytest.mark.parametrize(
    "body", [{"name": ""}, {"traits": None}, {"client_secret": ""}, {"colour": 1}, {"name": None}, []]
)
async def test_patch_with_a_bad_body_is_400_even_for_a_missing_application(
    client: httpx.AsyncClient, admin: dict[str, str], body: Any
) -> None:
    """Body validation precedes the existence check: 400 invalid_application before 404."""
    zone = await make_zone(client, admin)
    response = await client.patch(f"{apps(zone['id'])}/{MISSING}", json=body, headers=admin)
    assert (response.status_code, response.json()["error"]) == (400, "invalid_application")


async def test_patch_errors_come_in_the_contracts_order(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """403 trait; with client_secret 404 then client_secret_not_configured; then no_fields; then 404."""
    zone = await make_zone(client, admin)
    app_id = await make_application(client, admin, zone["id"])
    missing, present = f"{apps(zone['id'])}/{MISSING}", f"{apps(zone['id'])}/{app_id}"
    cases = [
        (missing, {"traits": ["a", "a"]}, 403, "trait_duplicate"),
        (missing, {"client_secret": "s"}, 404, "application_not_found"),
        (missing, {}, 400, "no_fields"),
        (missing, {"name": "x"}, 404, "application_not_found"),
        (present, {}, 400, "no_fields"),
    ]
    for url, body, status, code in cases:
        response = await client.patch(url, json=body, headers=admin)
        assert (response.status_code, response.json()["error"]) == (status, code), body
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE applications SET client_secret_hash = NULL"))
    no_secret = await client.patch(present, json={"client_secret": "s", "name": "n"}, headers=admin)
    assert (no_secret.status_code, no_secret.json()["error"]) == (400, "client_secret_not_configured")
    assert (await client.get(present, headers=admin)).json()["name"] == "App"


async def test_rotate_secret_returns_a_new_secret_once_and_the_old_one_stops_verifying(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """rotate-secret answers the application with a fresh cs_ secret; only the new one verifies."""
    zone = await make_zone(client, admin)
    created = (await create(client, admin, zone["id"])).json()
    response = await client.post(f"{apps(zone['id'])}/{created['id']}/rotate-secret", headers=admin)
    assert response.status_code == 200, response.text
    rotated = response.json()
    assert set(rotated) == {*APP_KEYS, "client_secret"}
    assert rotated["id"] == created["id"] and rotated["client_secret"] != created["client_secret"]
    assert re.fullmatch(r"cs_[A-Za-z0-9_-]{43}", rotated["client_secret"])
    stored = await stored_hash(engine, created["id"])
    assert raw_argon2id_verifies(rotated["client_secret"], stored)
    assert await verify_client_secret(rotated["client_secret"], stored)
    assert not raw_argon2id_verifies(created["client_secret"], stored)
    assert not await verify_client_secret(created["client_secret"], stored)


async def test_rotate_secret_of_a_missing_or_secretless_application_changes_nothing(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """404 application_not_found for a missing or archived one; 400 client_secret_not_configured for none."""
    zone = await make_zone(client, admin)
    app_id, gone = (
        await make_application(client, admin, zone["id"]),
        await make_application(client, admin, zone["id"]),
    )
    await client.delete(f"{apps(zone['id'])}/{gone}", headers=admin)
    for target in (MISSING, gone):
        response = await client.post(f"{apps(zone['id'])}/{target}/rotate-secret", headers=admin)
        assert (response.status_code, response.json()["error"]) == (404, "application_not_found")
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE applications SET client_secret_hash = NULL WHERE id = :id"), {"id": app_id}
        )
    response = await client.post(f"{apps(zone['id'])}/{app_id}/rotate-secret", headers=admin)
    assert (response.status_code, response.json()["error"]) == (400, "client_secret_not_configured")
    async with engine.connect() as conn:
        query = text("SELECT client_secret_hash FROM applications WHERE id = :id")
        assert (await conn.execute(query, {"id": app_id})).scalar_one() is None


async def test_delete_archives_and_then_every_route_answers_404(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """DELETE sets archived_at (204); GET, PATCH, DELETE and rotate then answer application_not_found."""
    zone = await make_zone(client, admin)
    app_id = await make_application(client, admin, zone["id"])
    url = f"{apps(zone['id'])}/{app_id}"
    assert (await client.delete(url, headers=admin)).status_code == 204
    async with engine.connect() as conn:
        archived = (await conn.execute(text("SELECT archived_at FROM applications"))).scalar_one()
    assert archived is not None
    for response in (
        await client.get(url, headers=admin),
        await client.patch(url, json={"name": "x"}, headers=admin),
        await client.delete(url, headers=admin),
        await client.post(f"{url}/rotate-secret", headers=admin),
    ):
        assert (response.status_code, response.json()["error"]) == (404, "application_not_found")


async def test_every_mutation_writes_its_change_event(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """created, updated, secret_rotated, deleted on caracal.changes, naming the application."""
    zone = await make_zone(client, admin)
    app_id = await make_application(client, admin, zone["id"])
    url = f"{apps(zone['id'])}/{app_id}"
    await client.patch(url, json={"name": "x"}, headers=admin)
    await client.post(f"{url}/rotate-secret", headers=admin)
    await client.delete(url, headers=admin)
    events = [
        (stream, payload["event"], payload["entity_id"], payload["zone_id"])
        for stream, payload in await outbox(engine)
        if payload.get("entity_type") == "application"
    ]
    names = [
        "application.created",
        "application.updated",
        "application.secret_rotated",
        "application.deleted",
    ]
    assert events == [("caracal.changes", name, app_id, zone["id"]) for name in names]


async def test_no_response_or_log_line_after_creation_holds_the_secret(
    client: httpx.AsyncClient, admin: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """GET, list, PATCH (with and without internals) never carry the secret; nor does any log line."""
    caplog.set_level(logging.DEBUG)
    zone = await make_zone(client, admin)
    created = (await create(client, admin, zone["id"])).json()
    secret, url = created["client_secret"], f"{apps(zone['id'])}/{created['id']}"
    rotated = (await client.post(f"{url}/rotate-secret", headers=admin)).json()["client_secret"]
    responses = [
        await client.get(url, headers=admin),
        await client.get(url, headers={**admin, **INTERNALS}),
        await client.get(apps(zone["id"]), headers={**admin, **INTERNALS}),
        await client.patch(url, json={"name": "y"}, headers=admin),
        await client.patch(url, json={"client_secret": "chosen-secret-1"}, headers={**admin, **INTERNALS}),
    ]
    for response in responses:
        assert response.status_code == 200
        for value in (secret, rotated, "chosen-secret-1"):
            assert value not in response.text
        assert "client_secret" not in response.text
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert not any(value in logged for value in (secret, rotated, "chosen-secret-1"))
