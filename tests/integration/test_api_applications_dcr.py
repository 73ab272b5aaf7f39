"""DCR against real Postgres and Redis: the contract's route, RFC 7591 registration, the zone switch,
the per-token rate window, the live cap under concurrency, and the zone's live count and shutdown."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from caracal.passwords import verify_client_secret
from caracal_api.resources import Resources
from tests.integration.api_helpers import app_with, bearer, make_application, make_token, make_zone, outbox
from tests.integration.test_api_applications import APP_KEYS, MISSING, raw_argon2id_verifies, stored_hash


def dcr(zone_id: str) -> str:
    return f"/v1/zones/{zone_id}/applications/dcr"


def register(zone_id: str) -> str:
    return f"/v1/zones/{zone_id}/applications/register"


def parse(stamp: str) -> dt.datetime:
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))


async def admin_token_id(engine: AsyncEngine) -> str:
    async with engine.connect() as conn:
        query = text("SELECT id FROM admin_tokens WHERE created_by = 'env-bootstrap' AND revoked_at IS NULL")
        return str((await conn.execute(query)).scalar_one())


async def expire(engine: AsyncEngine, application_id: str) -> None:
    async with engine.begin() as conn:
        query = text("UPDATE applications SET expires_at = now() - interval '1 second' WHERE id = :id")
        await conn.execute(query, {"id": application_id})


async def test_dcr_registers_an_expiring_application_with_a_secret(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """201: the Application shape plus client_secret, method dcr, expires_at = now + expires_in."""
    zone = await make_zone(client, admin, dcr_enabled=True)
    response = await client.post(dcr(zone["id"]), json={"name": "Agent", "expires_in": 60}, headers=admin)
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {*APP_KEYS, "client_secret"} and body["registration_method"] == "dcr"
    lifetime = parse(body["expires_at"]) - parse(body["created_at"])
    assert dt.timedelta(seconds=59) <= lifetime <= dt.timedelta(seconds=61)
    assert raw_argon2id_verifies(body["client_secret"], await stored_hash(engine, body["id"]))
    default = (await client.post(dcr(zone["id"]), json={"name": "B"}, headers=admin)).json()
    lifetime = parse(default["expires_at"]) - parse(default["created_at"])
    assert dt.timedelta(seconds=3599) <= lifetime <= dt.timedelta(seconds=3601)
    events = [p["event"] for _, p in await outbox(engine) if p.get("entity_type") == "application"]
    assert events == ["application.registered", "application.registered"]


@pytest.mark.parametrize(
    "body",
    [{}, {"name": ""}, {"name": "a", "expires_in": 0}, {"name": "a", "expires_in": 3601},
     {"name": "a", "expires_in": 1.5}, {"name": "a", "expires_in": "60"}, {"name": "a", "traits": []}],
)  # fmt: skip
async def test_dcr_with_a_bad_body_is_400_before_any_other_check(
    client: httpx.AsyncClient, admin: dict[str, str], body: dict[str, Any]
) -> None:
    """Strict body, expires_in an integer 1..3600: 400 invalid_application, even in a missing zone."""
    for zone_id in (MISSING, (await make_zone(client, admin, dcr_enabled=True))["id"]):
        response = await client.post(dcr(zone_id), json=body, headers=admin)
        assert (response.status_code, response.json()["error"]) == (400, "invalid_application")


async def test_dcr_in_a_missing_zone_or_with_dcr_off_is_refused(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """404 zone_not_found (missing or archived), then 403 dcr_disabled; nothing is written."""
    off = await make_zone(client, admin)
    archived = await make_zone(client, admin, name="Gone", dcr_enabled=True)
    await client.delete(f"/v1/zones/{archived['id']}", headers=admin)
    for zone_id, status, code in (
        (MISSING, 404, "zone_not_found"),
        (archived["id"], 404, "zone_not_found"),
        (off["id"], 403, "dcr_disabled"),
    ):
        response = await client.post(dcr(zone_id), json={"name": "a"}, headers=admin)
        assert (response.status_code, response.json()["error"]) == (status, code)
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM applications"))).scalar_one() == 0


async def test_more_than_ten_registrations_a_second_per_zone_and_token_are_429(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine, shared_redis: Redis
) -> None:
    """rl:dcr:<zone>:<token>: the 11th in the window is 429 dcr_rate_limit_exceeded, before the zone
    checks; another token has its own window."""
    zone = await make_zone(client, admin, dcr_enabled=True)
    key = f"rl:dcr:{zone['id']}:{await admin_token_id(engine)}"
    await shared_redis.set(key, 10, ex=1)
    response = await client.post(dcr(zone["id"]), json={"name": "a"}, headers=admin)
    assert (response.status_code, response.json()["error"]) == (429, "dcr_rate_limit_exceeded")
    other = bearer((await make_token(client, admin))["token"])
    assert (await client.post(dcr(zone["id"]), json={"name": "a"}, headers=other)).status_code == 201
    missing_key = f"rl:dcr:{MISSING}:{await admin_token_id(engine)}"
    await shared_redis.set(missing_key, 10, ex=1)
    response = await client.post(dcr(MISSING), json={"name": "a"}, headers=admin)
    assert response.json()["error"] == "dcr_rate_limit_exceeded"
    assert 0 < await shared_redis.pttl(key) <= 1000


async def test_each_registration_counts_in_a_window_of_one_second(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine, shared_redis: Redis
) -> None:
    """The first registration opens the window (SET 0 EX 1 NX); every one INCRs it."""
    zone = await make_zone(client, admin, dcr_enabled=True)
    key = f"rl:dcr:{zone['id']}:{await admin_token_id(engine)}"
    assert (await client.post(dcr(zone["id"]), json={"name": "a"}, headers=admin)).status_code == 201
    assert 0 < await shared_redis.pttl(key) <= 1000
    await shared_redis.set(key, 0, ex=30)  # a longer window, so the count below cannot roll over
    for _ in range(2):
        assert (await client.post(dcr(zone["id"]), json={"name": "a"}, headers=admin)).status_code == 201
    assert int(await shared_redis.get(key)) == 2
    assert await shared_redis.pttl(key) > 1000  # NX: an open window keeps its expiry


async def test_parallel_registrations_never_pass_the_live_cap(
    client: httpx.AsyncClient, resources: Resources, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """8 at once against a cap of 3 (CARACAL_DCR_MAX_LIVE_PER_ZONE): exactly 3 created, 5 get 429."""
    async with app_with(resources, dcr_max_live_per_zone=3) as (http,):
        zone = await make_zone(http, admin, dcr_enabled=True)
        responses = await asyncio.gather(
            *(http.post(dcr(zone["id"]), json={"name": f"a{n}"}, headers=admin) for n in range(8))
        )
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [201] * 3 + [429] * 5
        assert {r.json()["error"] for r in responses if r.status_code == 429} == {"dcr_limit_exceeded"}
        status = (await http.get(f"/v1/zones/{zone['id']}/dcr-status", headers=admin)).json()
        assert status["live_dcr_applications"] == 3
        created = [r.json()["id"] for r in responses if r.status_code == 201]
        await expire(engine, created[0])  # an expired one no longer counts
        assert (await http.post(dcr(zone["id"]), json={"name": "again"}, headers=admin)).status_code == 201


async def test_dcr_status_counts_only_live_dcr_applications(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """Live = the zone's DCR apps neither archived nor expired; managed and other zones' apps don't count."""
    zone, other = (
        await make_zone(client, admin, dcr_enabled=True),
        await make_zone(client, admin, dcr_enabled=True),
    )
    ids = [
        (await client.post(dcr(zone["id"]), json={"name": f"d{n}"}, headers=admin)).json()["id"]
        for n in range(4)
    ]
    await client.post(dcr(other["id"]), json={"name": "elsewhere"}, headers=admin)
    await make_application(client, admin, zone["id"])
    await expire(engine, ids[0])
    await client.delete(f"/v1/zones/{zone['id']}/applications/{ids[1]}", headers=admin)
    status = await client.get(f"/v1/zones/{zone['id']}/dcr-status", headers=admin)
    assert status.json() == {"id": zone["id"], "dcr_enabled": True, "live_dcr_applications": 2}
    listed = {
        a["id"] for a in (await client.get(f"/v1/zones/{zone['id']}/applications", headers=admin)).json()
    }
    assert ids[0] in listed and ids[1] not in listed  # expired but not archived is still listed
    assert (
        await client.get(f"/v1/zones/{zone['id']}/applications/{ids[0]}", headers=admin)
    ).status_code == 200


async def test_disabling_dcr_with_live_applications_needs_a_shutdown_mode(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """409 dcr_shutdown_required with the live count; keep_live disables and keeps them live."""
    zone = await make_zone(client, admin, dcr_enabled=True)
    for n in range(2):
        await client.post(dcr(zone["id"]), json={"name": f"d{n}"}, headers=admin)
    url = f"/v1/zones/{zone['id']}"
    refused = await client.patch(url, json={"dcr_enabled": False}, headers=admin)
    assert refused.status_code == 409
    assert (refused.json()["error"], refused.json()["live_dcr_applications"]) == ("dcr_shutdown_required", 2)
    kept = await client.patch(url, json={"dcr_enabled": False, "dcr_shutdown": "keep_live"}, headers=admin)
    assert kept.status_code == 200 and kept.json()["dcr_enabled"] is False
    status = (await client.get(f"{url}/dcr-status", headers=admin)).json()
    assert (status["dcr_enabled"], status["live_dcr_applications"]) == (False, 2)


async def test_revoke_live_archives_the_live_dcr_applications_and_reports_them(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """revoke_live archives live DCR apps (managed and expired ones stay), audits the count, emits events."""
    zone = await make_zone(client, admin, dcr_enabled=True)
    live = [
        (await client.post(dcr(zone["id"]), json={"name": f"d{n}"}, headers=admin)).json()["id"]
        for n in range(3)
    ]
    managed = await make_application(client, admin, zone["id"])
    await expire(engine, live[2])
    body = {"dcr_enabled": False, "dcr_shutdown": "revoke_live"}
    assert (await client.patch(f"/v1/zones/{zone['id']}", json=body, headers=admin)).status_code == 200
    listed = {
        a["id"] for a in (await client.get(f"/v1/zones/{zone['id']}/applications", headers=admin)).json()
    }
    assert listed == {managed, live[2]}
    async with engine.connect() as conn:
        query = text("SELECT payload_json FROM admin_audit_events WHERE action = 'DCR shutdown revoke_live'")
        payload = (await conn.execute(query)).scalar_one()
    assert (payload["live_dcr_applications"], payload["revoked_applications"]) == (2, 2)
    assert (payload["revoked_sessions"], payload["terminated_agents"], payload["revoked_delegations"]) == (
        0,
        0,
        0,
    )
    deleted = {p["entity_id"] for _, p in await outbox(engine) if p.get("event") == "application.deleted"}
    assert deleted == set(live[:2])


async def test_rfc7591_registration_answers_client_information(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """client_id, client_secret, epoch times (secret expiry = the DCR expiry), metadata echoed;
    unknown members ignored."""
    zone = await make_zone(client, admin, dcr_enabled=True)
    metadata = {
        "client_name": "CLI",
        "redirect_uris": ["http://127.0.0.1:8123/callback"],
        "grant_types": ["client_credentials"],
        "token_endpoint_auth_method": "client_secret_post",
        "scope": "read write",
        "software_statement_like": {"ignored": True},
    }
    response = await client.post(register(zone["id"]), json=metadata, headers=admin)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["client_secret_expires_at"] - body["client_id_issued_at"] in range(3599, 3602)
    assert abs(body["client_id_issued_at"] - dt.datetime.now(dt.UTC).timestamp()) < 60
    echoed = {k: v for k, v in metadata.items() if k != "software_statement_like"}
    assert {k: body[k] for k in echoed} == echoed and "software_statement_like" not in body
    stored = await stored_hash(engine, body["client_id"])
    assert raw_argon2id_verifies(body["client_secret"], stored) and await verify_client_secret(
        body["client_secret"], stored
    )
    app = (await client.get(f"/v1/zones/{zone['id']}/applications/{body['client_id']}", headers=admin)).json()
    assert (app["name"], app["registration_method"]) == ("CLI", "dcr")
    assert int(parse(app["expires_at"]).timestamp()) == body["client_secret_expires_at"]


async def test_rfc7591_registration_without_metadata_is_named_by_its_id(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    zone = await make_zone(client, admin, dcr_enabled=True)
    body = (await client.post(register(zone["id"]), json={}, headers=admin)).json()
    assert (body["client_name"], body["token_endpoint_auth_method"]) == (
        body["client_id"],
        "client_secret_basic",
    )


@pytest.mark.parametrize(
    ("metadata", "code"),
    [
        ({"client_name": 7}, "invalid_client_metadata"),
        ({"grant_types": "client_credentials"}, "invalid_client_metadata"),
        ({"token_endpoint_auth_method": "none"}, "invalid_client_metadata"),
        ({"redirect_uris": ["/relative"]}, "invalid_redirect_uri"),
        ({"redirect_uris": ["https://app.example/cb#frag"]}, "invalid_redirect_uri"),
    ],
)
async def test_rfc7591_bad_metadata_gets_an_rfc_error_body(
    client: httpx.AsyncClient, admin: dict[str, str], metadata: dict[str, Any], code: str
) -> None:
    """400 {"error": <RFC 7591 §3.2.2 code>, "error_description": ...}; nothing registered."""
    zone = await make_zone(client, admin, dcr_enabled=True)
    response = await client.post(register(zone["id"]), json=metadata, headers=admin)
    assert response.status_code == 400
    assert response.json()["error"] == code and response.json()["error_description"]
    assert (await client.get(f"/v1/zones/{zone['id']}/applications", headers=admin)).json() == []


async def test_rfc7591_registration_keeps_the_dcr_rules_and_their_statuses(
    client: httpx.AsyncClient,
    resources: Resources,
    admin: dict[str, str],
    engine: AsyncEngine,
    shared_redis: Redis,
) -> None:
    """Same switch, cap and window as the DCR route: 404, 403 dcr_disabled, 429s, with error_description."""
    async with app_with(resources, dcr_max_live_per_zone=1) as (http,):
        off, on = await make_zone(http, admin), await make_zone(http, admin, name="On", dcr_enabled=True)
        assert (await http.post(register(on["id"]), json={}, headers=admin)).status_code == 201
        cases = [
            (MISSING, 404, "zone_not_found"),
            (off["id"], 403, "dcr_disabled"),
            (on["id"], 429, "dcr_limit_exceeded"),
        ]
        for zone_id, status, code in cases:
            response = await http.post(register(zone_id), json={"client_name": "x"}, headers=admin)
            assert (response.status_code, response.json()["error"]) == (status, code)
            assert response.json()["error_description"]
        await shared_redis.set(f"rl:dcr:{on['id']}:{await admin_token_id(engine)}", 10, ex=1)
        limited = await http.post(register(on["id"]), json={}, headers=admin)
        assert (limited.status_code, limited.json()["error"]) == (429, "dcr_rate_limit_exceeded")
