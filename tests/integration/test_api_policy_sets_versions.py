"""Policy-set versions over HTTP: manifests and their hash, the contract check, numbering, reads."""

from __future__ import annotations

import asyncio
import hashlib
import json

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.api_helpers import count_rows, make_policy_version, make_zone, outbox

VERSION_FIELDS = {"id", "policy_set_id", "version", "manifest_sha256", "schema_version", "created_at"}
NO_RESULT = "package caracal.authz\n\nallow := true\n"


async def _set(client: httpx.AsyncClient, admin: dict[str, str]) -> tuple[str, str]:
    zone_id = str((await make_zone(client, admin))["id"])
    response = await client.post(f"/v1/zones/{zone_id}/policy-sets", json={"name": "S"}, headers=admin)
    assert response.status_code == 201, response.text
    return zone_id, str(response.json()["id"])


async def _post(
    client: httpx.AsyncClient, admin: dict[str, str], zone_id: str, set_id: str, body: object
) -> httpx.Response:
    return await client.post(f"/v1/zones/{zone_id}/policy-sets/{set_id}/versions", json=body, headers=admin)


def _manifest(*ids: str) -> dict[str, object]:
    return {"manifest": [{"policy_version_id": pid} for pid in ids]}


async def test_post_stores_the_canonical_manifest_and_its_sha256_and_answers_version_id(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """manifest_json is the compact text the STS hashes; extra keys of an entry are dropped."""
    zone_id, set_id = await _set(client, admin)
    ids = [await make_policy_version(client, admin, zone_id) for _ in range(2)]
    body = {"manifest": [{"policy_version_id": ids[0], "note": "x"}, {"policy_version_id": ids[1]}]}
    response = await _post(client, admin, zone_id, set_id, body)
    assert response.status_code == 201, response.text
    created = response.json()
    assert set(created) == VERSION_FIELDS | {"version_id"}
    assert (created["version_id"], created["version"], created["schema_version"]) == (
        created["id"],
        1,
        "2026-05-20",
    )
    canonical = json.dumps([{"policy_version_id": pid} for pid in ids], separators=(",", ":"))
    assert created["manifest_sha256"] == hashlib.sha256(canonical.encode()).hexdigest()
    async with engine.connect() as conn:
        stored = (
            await conn.execute(
                text("SELECT manifest_json::text, created_by FROM policy_set_versions WHERE id = :id"),
                {"id": created["id"]},
            )
        ).one()
    assert json.loads(stored[0]) == [{"policy_version_id": pid} for pid in ids]
    assert stored[1] == "bootstrap"
    events = [payload for _, payload in await outbox(engine) if payload.get("entity_type") == "policy_set"]
    assert events[-1] == {
        "event": "policy_set.version_created",
        "zone_id": zone_id,
        "entity_type": "policy_set",
        "entity_id": created["id"],
    }


async def test_bad_bodies_are_invalid_body_before_anything_else(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    zone_id, _ = await _set(client, admin)
    too_many = {"manifest": [{"policy_version_id": f"v{n}"} for n in range(257)]}
    for body in (
        {},
        {"manifest": []},
        too_many,
        {"manifest": [{}]},
        {"manifest": [{"policy_version_id": ""}]},
    ):
        response = await _post(client, admin, zone_id, "no-such-set", body)
        assert (response.status_code, response.json()["error"]) == (400, "invalid_body"), body
        assert response.json()["details"]["issues"]
    assert await count_rows(engine, "policy_set_versions") == 0


async def test_schema_version_is_checked_before_the_set_and_the_set_before_the_contract(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    zone_id, set_id = await _set(client, admin)
    response = await _post(
        client, admin, zone_id, "no-such-set", {**_manifest("x"), "schema_version": "1999-01-01"}
    )
    assert (response.status_code, response.json()["error"], response.json()["detail"]) == (
        422,
        "invalid_schema_version",
        "unsupported_schema_version:1999-01-01",
    )
    response = await _post(client, admin, zone_id, "no-such-set", _manifest("x"))
    assert (response.status_code, response.json()["error"]) == (404, "policy_set_not_found")
    response = await _post(client, admin, zone_id, set_id, _manifest("x"))
    assert (response.status_code, response.json()["error"], response.json()["detail"]) == (
        422,
        "invalid_policy_contract",
        "policy set manifest references missing policy versions",
    )


async def test_contract_failures_carry_the_contracts_details_and_store_nothing(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    zone_id, set_id = await _set(client, admin)
    good = await make_policy_version(client, admin, zone_id)
    old = await make_policy_version(client, admin, zone_id, schema_version="2026-03-16")
    other_zone = str((await make_zone(client, admin, name="Other"))["id"])
    foreign = await make_policy_version(client, admin, other_zone)
    cases = {
        "policy set manifest contains duplicate policy_version_id entries": _manifest(good, good),
        "policy set manifest references missing policy versions": _manifest(good, foreign),
        f"policy version {old} schema 2026-03-16 does not match policy set schema 2026-05-20": _manifest(
            good, old
        ),
    }
    for detail, body in cases.items():
        response = await _post(client, admin, zone_id, set_id, body)
        assert (response.status_code, response.json()["error"]) == (422, "invalid_policy_contract"), (
            response.text
        )
        assert response.json()["detail"] == detail
    assert await count_rows(engine, "policy_set_versions") == 0
    matching = await _post(client, admin, zone_id, set_id, {**_manifest(old), "schema_version": "2026-03-16"})
    assert matching.status_code == 201, matching.text


async def test_concurrent_writers_get_distinct_consecutive_numbers(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """max+1 under the set's row lock: twelve at once give 1..12, no duplicate, no 500."""
    zone_id, set_id = await _set(client, admin)
    policy = await make_policy_version(client, admin, zone_id)
    answers = await asyncio.gather(
        *(_post(client, admin, zone_id, set_id, _manifest(policy)) for _ in range(12))
    )
    assert [answer.status_code for answer in answers] == [201] * 12
    assert sorted(answer.json()["version"] for answer in answers) == list(range(1, 13))


async def test_get_answers_the_manifest_and_its_policies_and_404s_another_sets_version(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    zone_id, set_id = await _set(client, admin)
    policy = await make_policy_version(client, admin, zone_id)
    created = (await _post(client, admin, zone_id, set_id, _manifest(policy))).json()
    url = f"/v1/zones/{zone_id}/policy-sets/{set_id}/versions/{created['id']}"
    got = await client.get(url, headers=admin)
    assert got.status_code == 200, got.text
    assert got.json() == {
        **{key: created[key] for key in VERSION_FIELDS},
        "manifest_json": [{"policy_version_id": policy}],
        "policies": [policy],
    }
    other = (await client.post(f"/v1/zones/{zone_id}/policy-sets", json={"name": "T"}, headers=admin)).json()
    wrong = await client.get(
        f"/v1/zones/{zone_id}/policy-sets/{other['id']}/versions/{created['id']}", headers=admin
    )
    assert (wrong.status_code, wrong.json()["error"]) == (404, "policy_set_version_not_found")


async def test_versions_list_newest_first_in_pages(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    zone_id, set_id = await _set(client, admin)
    policy = await make_policy_version(client, admin, zone_id)
    for _ in range(3):
        assert (await _post(client, admin, zone_id, set_id, _manifest(policy))).status_code == 201
    url = f"/v1/zones/{zone_id}/policy-sets/{set_id}/versions"
    page = await client.get(f"{url}?limit=2", headers=admin)
    assert [row["version"] for row in page.json()] == [3, 2]
    assert set(page.json()[0]) == VERSION_FIELDS
    rest = await client.get(page.headers["link"].split(";")[0].strip("<>"), headers=admin)
    assert [row["version"] for row in rest.json()] == [1]
    missing = await client.get(f"/v1/zones/{zone_id}/policy-sets/no-such/versions", headers=admin)
    assert (missing.status_code, missing.json()["error"]) == (404, "policy_set_not_found")
    other_zone, fresh = await _set(client, admin)  # a set of another zone, with no version yet
    empty = await client.get(f"/v1/zones/{other_zone}/policy-sets/{fresh}/versions", headers=admin)
    assert (empty.status_code, empty.json()) == (200, [])
    foreign = await client.get(f"/v1/zones/{zone_id}/policy-sets/{fresh}/versions", headers=admin)
    assert (foreign.status_code, foreign.json()["error"]) == (404, "policy_set_not_found")


async def test_a_module_without_result_is_refused_by_the_contract_check(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """A policy version written by others (not through our validator) is re-checked with regopy."""
    zone_id, set_id = await _set(client, admin)
    policy = await make_policy_version(client, admin, zone_id)
    async with engine.begin() as conn:
        policy_id = (
            await conn.execute(text("SELECT policy_id FROM policy_versions WHERE id = :id"), {"id": policy})
        ).scalar_one()
        await conn.execute(
            text(
                "INSERT INTO policy_versions (id, policy_id, version, content, content_sha256,"
                " schema_version, created_by)"
                " VALUES ('raw-version', :policy, 2, :content, 'x', '2026-05-20', 'someone')"
            ),
            {"policy": policy_id, "content": NO_RESULT},
        )
    response = await _post(client, admin, zone_id, set_id, _manifest(policy, "raw-version"))
    assert (response.status_code, response.json()["detail"]) == (
        422,
        "policy version raw-version must emit data.caracal.authz.result",
    )
