"""What engines read: simulation, activation status, signed bundles, and the STS's own reads (§5.5)."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import httpx
import regopy
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from caracal_api.resources import Resources
from tests.integration.api_helpers import (
    app_with,
    make_policy_set,
    make_policy_set_version,
    make_policy_version,
    make_zone,
)

# Two complete definitions of result that disagree: evaluating both is a runtime conflict.
CONFLICTING = """package caracal.authz

import rego.v1

result := {"decision": "allow"} if input.a
result := {"decision": "deny"} if input.b
"""


def _unb64(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


async def _active(client: httpx.AsyncClient, admin: dict[str, str]) -> tuple[str, str, str]:
    zone_id = str((await make_zone(client, admin))["id"])
    set_id = await make_policy_set(client, admin, zone_id)
    got = await client.get(f"/v1/zones/{zone_id}/policy-sets/{set_id}", headers=admin)
    return zone_id, set_id, str(got.json()["active_version_id"])


def _input(zone_id: str, action: str = "read") -> dict[str, Any]:
    return {
        "schema_version": "2026-05-20",
        "principal": {"zone_id": zone_id},
        "resource": {"id": "r"},
        "action": action,
        "requested_scopes": ["read"],
        "context": {},
    }


async def _simulate(
    client: httpx.AsyncClient, admin: dict[str, str], zone_id: str, set_id: str, body: object
) -> httpx.Response:
    return await client.post(f"/v1/zones/{zone_id}/policy-sets/{set_id}/simulate", json=body, headers=admin)


async def test_simulation_evaluates_the_version_and_answers_the_real_decision(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    zone_id, set_id, version = await _active(client, admin)
    allowed = await _simulate(
        client, admin, zone_id, set_id, {"version_id": version, "input": _input(zone_id)}
    )
    assert allowed.status_code == 200, allowed.text
    body = allowed.json()
    assert (body["dry_run"], body["would_activate"], body["warnings"]) == (True, True, [])
    assert body["result"] == {"decision": "allow", "reason": "reads are allowed"}
    assert body["explanation"]["evaluation"] == "executed" and body["explanation"]["decision"] == "allow"
    assert body["explanation"]["policy_set_version_id"] == version
    assert body["explanation"]["manifest_sha256"] == body["manifest_sha256"]
    assert body["input_schema_version"] == "2026-05-20" and len(body["policies"]) == 1
    denied = await _simulate(
        client, admin, zone_id, set_id, {"version_id": version, "input": _input(zone_id, "write")}
    )
    assert denied.json()["explanation"]["decision"] == "deny"


async def test_simulation_warns_about_inputs_unlike_the_stss(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    zone_id, set_id, version = await _active(client, admin)
    given = {"schema_version": "2026-03-16", "principal": {"zone_id": "elsewhere"}, "context": "no"}
    response = await _simulate(client, admin, zone_id, set_id, {"version_id": version, "input": given})
    body = response.json()
    assert body["warnings"] == [
        "input_schema_mismatch:2026-03-16",
        "principal_zone_mismatch",
        "missing_resource",
        "missing_action",
        "missing_context",
    ]
    assert body["would_activate"] is False and body["explanation"]["evaluation"] == "executed"


async def test_simulation_without_input_is_not_executed_and_errors_follow_the_contract(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    zone_id, set_id, version = await _active(client, admin)
    bare = (await _simulate(client, admin, zone_id, set_id, {"version_id": version})).json()
    assert (bare["explanation"]["evaluation"], bare["result"], bare["warnings"]) == ("not_executed", None, [])
    for body, status, code in (
        ({}, 400, "invalid_body"),
        ({"version_id": version, "input": [1]}, 400, "invalid_body"),
        ({"version_id": "missing"}, 404, "version_not_found"),
    ):
        response = await _simulate(client, admin, zone_id, set_id, body)
        assert (response.status_code, response.json()["error"]) == (status, code), body


async def test_an_evaluation_error_is_reported_as_failed(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    zone_id = str((await make_zone(client, admin))["id"])
    set_id = (
        await client.post(f"/v1/zones/{zone_id}/policy-sets", json={"name": "C"}, headers=admin)
    ).json()["id"]
    policy = await make_policy_version(client, admin, zone_id, CONFLICTING)
    version = await make_policy_set_version(client, admin, zone_id, set_id, policy)
    given = {**_input(zone_id), "a": True, "b": True}
    body = (await _simulate(client, admin, zone_id, set_id, {"version_id": version, "input": given})).json()
    assert body["explanation"]["evaluation"] == "failed", body
    assert body["explanation"]["reason"] and body["result"] is None


async def test_what_the_sts_reads_evaluates_to_what_simulation_answered(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """CONTRACT.md §5.5: the active binding (LIMIT 1, no ORDER BY), the manifest, the policies' content."""
    zone_id, _first_set, version = await _active(client, admin)
    await make_policy_set(client, admin, zone_id)  # a later activation in the zone: it now holds the zone
    newest = (await client.get(f"/v1/zones/{zone_id}/policy-sets?limit=1", headers=admin)).json()[0]
    async with engine.connect() as conn:
        binding = (
            await conn.execute(
                text(
                    "SELECT policy_set_id, active_version_id FROM policy_set_bindings"
                    " WHERE zone_id = :z AND active_version_id IS NOT NULL LIMIT 1"
                ),
                {"z": zone_id},
            )
        ).one()
        loaded = (
            await conn.execute(
                text(
                    "SELECT id, manifest_json::text, manifest_sha256, schema_version FROM policy_set_versions"
                    " WHERE id = :id"
                ),
                {"id": binding.active_version_id},
            )
        ).one()
        entries = json.loads(loaded[1])
        contents = (
            await conn.execute(
                text("SELECT id, content FROM policy_versions WHERE id = ANY(:ids)"),
                {"ids": [entry["policy_version_id"] for entry in entries]},
            )
        ).all()
    assert (binding.policy_set_id, binding.active_version_id) == (newest["id"], newest["active_version_id"])
    assert hashlib.sha256(json.dumps(entries, separators=(",", ":")).encode()).hexdigest() == loaded[2]
    interpreter = regopy.Interpreter()
    for row in contents:
        interpreter.add_module(row.id, row.content)
    interpreter.set_input(regopy.Input(_input(zone_id)))
    decided = interpreter.query("data.caracal.authz.result").results[0].expressions[0]
    simulated = await _simulate(
        client, admin, zone_id, newest["id"], {"version_id": loaded[0], "input": _input(zone_id)}
    )
    assert json.loads(json.dumps(decided)) == simulated.json()["result"]
    assert version != loaded[0]


async def _status(client: httpx.AsyncClient, admin: dict[str, str], url: str) -> dict[str, Any]:
    response = await client.get(url, headers=admin)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_activation_status_follows_the_outbox_row(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    zone_id = str((await make_zone(client, admin))["id"])
    set_id = (
        await client.post(f"/v1/zones/{zone_id}/policy-sets", json={"name": "S"}, headers=admin)
    ).json()["id"]
    version = await make_policy_set_version(client, admin, zone_id, set_id)
    base = f"/v1/zones/{zone_id}/policy-sets/{set_id}/activation-status"
    missing = await client.get(base, headers=admin)
    assert (missing.status_code, missing.json()["error"]) == (404, "active_policy_set_version_not_found")
    waiting = await _status(client, admin, f"{base}?version_id={version}")
    assert (waiting["active"], waiting["propagation_status"], waiting["outbox"]["state"]) == (
        False,
        "waiting_for_activation",
        "missing",
    )
    accepted = (
        await client.post(
            f"/v1/zones/{zone_id}/policy-sets/{set_id}/activate", json={"version_id": version}, headers=admin
        )
    ).json()
    pending = await _status(client, admin, accepted["status_url"])
    assert (pending["active"], pending["propagation_status"], pending["sts"]) == (
        True,
        "waiting_for_outbox",
        {"state": "not_configured"},
    )
    assert pending["outbox"] == {
        "id": accepted["outbox_id"],
        "state": "pending",
        "attempts": 0,
        "last_error": None,
        "dispatched_at": None,
    }
    assert (pending["manifest_sha256"], pending["shadow_version_id"]) == (
        (
            await client.get(f"/v1/zones/{zone_id}/policy-sets/{set_id}/versions/{version}", headers=admin)
        ).json()["manifest_sha256"],
        None,
    )
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE event_outbox SET dispatched_at = now() WHERE id = :id"),
            {"id": accepted["outbox_id"]},
        )
    newest = await _status(client, admin, base)  # no outbox_id: the newest matching entry
    assert (newest["outbox"]["state"], newest["propagation_status"]) == ("dispatched", "waiting_for_sts")
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE event_outbox SET dispatched_at = NULL, available_at = 'infinity', attempts = 100"
                " WHERE id = :id"
            ),
            {"id": accepted["outbox_id"]},
        )
    dead = await _status(client, admin, accepted["status_url"])
    assert (dead["outbox"]["state"], dead["outbox"]["attempts"], dead["propagation_status"]) == (
        "dead",
        100,
        "failed",
    )
    other_entry = (
        await client.post(f"/v1/zones/{zone_id}/policy-sets", json={"name": "T"}, headers=admin)
    ).json()
    async with engine.connect() as conn:
        change_id = (
            await conn.execute(
                text("SELECT id FROM event_outbox WHERE payload_json ->> 'entity_id' = :id"),
                {"id": other_entry["id"]},
            )
        ).scalar_one()
    mismatched = await _status(client, admin, f"{base}?outbox_id={change_id}")
    assert (mismatched["outbox"]["state"], mismatched["propagation_status"]) == ("mismatch", "failed")
    unknown = await _status(client, admin, f"{base}?outbox_id=nope")
    assert unknown["outbox"]["state"] == "missing"


async def test_activation_status_errors_and_an_unreachable_sts(
    client: httpx.AsyncClient, admin: dict[str, str], resources: Resources
) -> None:
    zone_id, set_id, _version = await _active(client, admin)
    base = f"/v1/zones/{zone_id}/policy-sets/{set_id}/activation-status"
    gone = await client.get(f"/v1/zones/{zone_id}/policy-sets/nope/activation-status", headers=admin)
    assert (gone.status_code, gone.json()["error"]) == (404, "policy_set_binding_not_found")
    bad = await client.get(f"{base}?version_id=", headers=admin)
    assert (bad.status_code, bad.json()["error"]) == (400, "invalid_body")
    got = await client.get(base, headers=admin)
    assert got.headers["etag"] == f'"{got.json()["active_version_id"]}"'
    async with app_with(resources, sts_url="http://127.0.0.1:9") as (other,):
        answer = (await other.get(base, headers=admin)).json()
    assert answer["sts"]["state"] == "unreachable" and answer["sts"]["detail"]


async def test_a_bundle_is_deterministic_signed_and_served_with_an_etag(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    zone_id, set_id, version = await _active(client, admin)
    url = f"/v1/zones/{zone_id}/policy-sets/{set_id}/versions/{version}/bundle"
    first, second = await client.get(url, headers=admin), await client.get(url, headers=admin)
    assert first.status_code == 200, first.text
    assert first.content == second.content and first.headers["etag"] == second.headers["etag"]
    assert first.headers["etag"] == f'"{hashlib.sha256(first.content).hexdigest()}"'
    key = (await client.get("/v1/policy-bundles/public-key")).json()  # no token needed
    assert (key["algorithm"], key["key_id"]) == ("Ed25519", first.headers["x-caracal-bundle-key-id"])
    public = Ed25519PublicKey.from_public_bytes(_unb64(key["public_key"]))
    public.verify(_unb64(first.headers["x-caracal-bundle-signature"]), first.content)
    document = json.loads(first.content)
    assert (document["policy_set_version_id"], document["revision"]) == (version, 1)
    assert first.headers["x-caracal-bundle-revision"] == "1"
    async with engine.connect() as conn:
        stored = (await conn.execute(text("SELECT id, content FROM policy_versions"))).all()
    assert sorted((p["policy_version_id"], p["content"]) for p in document["policies"]) == sorted(
        tuple(r) for r in stored
    )
    cached = await client.get(url, headers={**admin, "If-None-Match": first.headers["etag"]})
    assert (cached.status_code, cached.content) == (304, b"")
    later = await make_policy_set_version(client, admin, zone_id, set_id)
    newer = await client.get(
        f"/v1/zones/{zone_id}/policy-sets/{set_id}/versions/{later}/bundle", headers=admin
    )
    assert json.loads(newer.content)["revision"] == 2
    wrong = await client.get(f"/v1/zones/{zone_id}/policy-sets/{set_id}/versions/nope/bundle", headers=admin)
    assert (wrong.status_code, wrong.json()["error"]) == (404, "policy_set_version_not_found")


async def test_without_a_signing_key_bundles_are_503(
    client: httpx.AsyncClient, admin: dict[str, str], resources: Resources
) -> None:
    zone_id, set_id, version = await _active(client, admin)
    async with app_with(resources, bundle_signing_key=None) as (other,):
        bundle = await other.get(
            f"/v1/zones/{zone_id}/policy-sets/{set_id}/versions/{version}/bundle", headers=admin
        )
        key = await other.get("/v1/policy-bundles/public-key")
    for response in (bundle, key):
        assert (response.status_code, response.json()["error"]) == (503, "bundle_signing_key_missing")
