"""Policies and their versions against real Postgres, Redis and regopy (CONTRACT.md §4.5)."""

from __future__ import annotations

import asyncio
import hashlib
import re
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.api_helpers import ALLOW_READS, count_rows, make_policy, make_zone, outbox

ISO_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
VERSION_KEYS = {"id", "policy_id", "version", "content_sha256", "schema_version", "created_at"}
ROW_KEYS = VERSION_KEYS | {"content", "created_by", "archived_at"}
DENY_ALL = 'package caracal.authz\n\ndefault result := {"decision": "deny"}\n'
MISSING = "01900000-0000-7000-8000-000000000000"


def policies_url(zone_id: str, *rest: str) -> str:
    return "/".join([f"/v1/zones/{zone_id}/policies", *rest])


async def create(
    client: httpx.AsyncClient, admin: dict[str, str], zone_id: str, **body: Any
) -> httpx.Response:
    return await client.post(
        policies_url(zone_id), json={"name": "p", "content": ALLOW_READS, **body}, headers=admin
    )


async def test_create_answers_201_with_the_policy_its_version_1_and_a_top_level_version_id(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """The contract's fields, description null when absent, version 1 with the content's sha256."""
    zone = await make_zone(client, admin)
    response = await create(client, admin, zone["id"], name="reads", unknown_key="dropped")
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"id", "zone_id", "name", "description", "version", "version_id"}
    assert (body["zone_id"], body["name"], body["description"]) == (zone["id"], "reads", None)
    version = body["version"]
    assert set(version) == VERSION_KEYS and version["id"] == body["version_id"]
    assert (version["policy_id"], version["version"], version["schema_version"]) == (
        body["id"],
        1,
        "2026-05-20",
    )
    assert version["content_sha256"] == hashlib.sha256(ALLOW_READS.encode()).hexdigest()
    assert ISO_MS.match(version["created_at"])
    async with engine.connect() as conn:
        row = (await conn.execute(text("SELECT created_by, owner_type FROM policies"))).one()
    assert (row.created_by, row.owner_type) == ("bootstrap", "customer")
    events = [p for stream, p in await outbox(engine) if stream == "caracal.changes"]
    assert {"event": "policy.created", "entity_id": body["id"]}.items() <= events[-1].items()


async def test_list_is_a_bare_array_of_live_policies_newest_first(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """List rows carry created_by; an archived policy is gone from the list."""
    zone = await make_zone(client, admin)
    first = await make_policy(client, admin, zone["id"])
    second = await make_policy(client, admin, zone["id"], description="two", owner_type="platform")
    assert (await client.delete(policies_url(zone["id"], first), headers=admin)).status_code == 204
    listed = await client.get(policies_url(zone["id"]), headers=admin)
    assert listed.status_code == 200
    rows = listed.json()
    assert [row["id"] for row in rows] == [second]
    assert set(rows[0]) == {"id", "zone_id", "name", "description", "owner_type", "created_by", "created_at"}
    assert (rows[0]["description"], rows[0]["owner_type"], rows[0]["created_by"]) == (
        "two",
        "platform",
        "bootstrap",
    )


async def test_get_lists_every_version_with_every_column_newest_first(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """GET one: no created_by at the top; versions with content, created_by, archived_at, ISO ms Z."""
    zone = await make_zone(client, admin)
    policy_id = await make_policy(client, admin, zone["id"])
    added = await client.post(
        policies_url(zone["id"], policy_id, "versions"),
        json={"content": DENY_ALL, "schema_version": "2026-03-16"},
        headers=admin,
    )
    assert added.status_code == 201, added.text
    body = (await client.get(policies_url(zone["id"], policy_id), headers=admin)).json()
    assert set(body) == {"id", "zone_id", "name", "description", "owner_type", "created_at", "versions"}
    versions = body["versions"]
    assert [v["version"] for v in versions] == [2, 1]
    assert all(set(v) == ROW_KEYS for v in versions)
    assert (versions[0]["content"], versions[0]["schema_version"]) == (DENY_ALL, "2026-03-16")
    assert versions[1]["content"] == ALLOW_READS and versions[0]["archived_at"] is None
    assert all(ISO_MS.match(v["created_at"]) for v in versions) and ISO_MS.match(body["created_at"])


async def test_unknown_and_archived_policies_are_404_policy_not_found(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """GET, DELETE and POST versions of a missing or archived policy: 404 policy_not_found."""
    zone = await make_zone(client, admin)
    policy_id = await make_policy(client, admin, zone["id"])
    assert (await client.delete(policies_url(zone["id"], policy_id), headers=admin)).status_code == 204
    for target in (policy_id, MISSING):
        got = await client.get(policies_url(zone["id"], target), headers=admin)
        deleted = await client.delete(policies_url(zone["id"], target), headers=admin)
        added = await client.post(
            policies_url(zone["id"], target, "versions"), json={"content": DENY_ALL}, headers=admin
        )
        assert [r.status_code for r in (got, deleted, added)] == [404, 404, 404]
        assert {r.json()["error"] for r in (got, deleted, added)} == {"policy_not_found"}


async def test_delete_archives_and_announces_policy_deleted(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """DELETE sets archived_at only; the versions stay (policy sets may name them)."""
    zone = await make_zone(client, admin)
    policy_id = await make_policy(client, admin, zone["id"])
    assert (await client.delete(policies_url(zone["id"], policy_id), headers=admin)).status_code == 204
    assert await count_rows(engine, "policy_versions") == 1
    events = [p["event"] for stream, p in await outbox(engine) if stream == "caracal.changes"]
    assert events[-2:] == ["policy.created", "policy.deleted"]


async def test_a_duplicate_name_is_409_policy_conflict_even_after_archiving(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """UNIQUE (zone_id, name) holds archived rows too: 409 policy_conflict, never a 500."""
    zone = await make_zone(client, admin)
    first = await create(client, admin, zone["id"], name="same")
    again = await create(client, admin, zone["id"], name="same")
    assert (again.status_code, again.json()["error"]) == (409, "policy_conflict")
    await client.delete(policies_url(zone["id"], first.json()["id"]), headers=admin)
    after_archive = await create(client, admin, zone["id"], name="same")
    assert (after_archive.status_code, after_archive.json()["error"]) == (409, "policy_conflict")
    other_zone = await make_zone(client, admin, name="Other")
    assert (await create(client, admin, other_zone["id"], name="same")).status_code == 201
    assert await count_rows(engine, "policy_versions") == 2


@pytest.mark.parametrize(
    "body",
    [{}, {"name": ""}, {"name": "p", "content": ""}, {"name": "p", "content": 5}, {"content": ALLOW_READS}],
)
async def test_a_bad_body_is_400_invalid_body_with_issues(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine, body: dict[str, Any]
) -> None:
    """The throwing parse's body: invalid_body, error_description, requestId, details.issues."""
    zone = await make_zone(client, admin)
    response = await client.post(policies_url(zone["id"]), json=body, headers=admin)
    assert response.status_code == 400, response.text
    problem = response.json()
    assert (problem["error"], problem["error_description"]) == (
        "invalid_body",
        "Request body failed validation",
    )
    assert problem["requestId"] == response.headers["x-request-id"]
    assert problem["details"]["issues"]
    assert await count_rows(engine, "policies") == 0


async def test_a_missing_zone_outranks_a_bad_body_and_bad_rego(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """404 zone_not_found comes before 400 invalid_body and 422 invalid_rego (the contract's order)."""
    bad_body = await client.post(policies_url(MISSING), json={"name": ""}, headers=admin)
    bad_rego = await create(client, admin, MISSING, content="package caracal.authz\nresult := [\n")
    assert [r.status_code for r in (bad_body, bad_rego)] == [404, 404]
    assert {r.json()["error"] for r in (bad_body, bad_rego)} == {"zone_not_found"}


async def test_an_unsupported_schema_version_is_422_with_the_contracts_detail(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """invalid_schema_version with detail unsupported_schema_version:<v>; nothing stored."""
    zone = await make_zone(client, admin)
    response = await create(client, admin, zone["id"], schema_version="2020-01-01")
    assert response.status_code == 422
    assert response.json()["error"] == "invalid_schema_version"
    assert response.json()["detail"] == "unsupported_schema_version:2020-01-01"
    policy_id = await make_policy(client, admin, zone["id"])
    version = await client.post(
        policies_url(zone["id"], policy_id, "versions"),
        json={"content": DENY_ALL, "schema_version": "x"},
        headers=admin,
    )
    assert (version.status_code, version.json()["detail"]) == (422, "unsupported_schema_version:x")
    assert await count_rows(engine, "policy_versions") == 1


@pytest.mark.parametrize(
    ("content", "detail"),
    [
        ("package caracal.authz\n\nresult := [1, 2}\n", "unbalanced_delimiters at line 3, column 11"),
        ("package other\n\nresult := 1\n", "must_use_package_caracal_authz at line 1, column 1"),
        ("package caracal.authz\n\nallow := true\n", "must_define_result_rule"),
        ("result := 1\n", "missing_package_declaration"),
        (
            "package caracal.authz\n\nresult := x if {\n  x := http.send({})\n}\n",
            "forbidden_builtin:http.send at line 4, column 8",
        ),
    ],
)
async def test_invalid_rego_is_422_invalid_rego_with_line_and_column_and_stores_nothing(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine, content: str, detail: str
) -> None:
    """The contract's code starts `detail`, then where (DESIGN.md); no policy, no version, no event."""
    zone = await make_zone(client, admin)
    response = await create(client, admin, zone["id"], content=content)
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "invalid_rego"
    assert response.json()["detail"].startswith(detail)
    policy_id = await make_policy(client, admin, zone["id"])
    version = await client.post(
        policies_url(zone["id"], policy_id, "versions"), json={"content": content}, headers=admin
    )
    assert (version.status_code, version.json()["error"]) == (422, "invalid_rego")
    assert (await count_rows(engine, "policies"), await count_rows(engine, "policy_versions")) == (1, 1)


async def test_bad_content_outranks_a_missing_policy_on_version_create(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """POST versions: 422 invalid_rego before 404 policy_not_found (the contract's order)."""
    zone = await make_zone(client, admin)
    response = await client.post(
        policies_url(zone["id"], MISSING, "versions"), json={"content": "package x\n"}, headers=admin
    )
    assert (response.status_code, response.json()["error"]) == (422, "invalid_rego")


async def test_version_create_answers_the_version_and_its_version_id_and_announces_it(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """201 PolicyVersion + version_id; created_by the caller; policy.version_created on caracal.changes."""
    zone = await make_zone(client, admin)
    policy_id = await make_policy(client, admin, zone["id"])
    response = await client.post(
        policies_url(zone["id"], policy_id, "versions"), json={"content": DENY_ALL, "extra": 1}, headers=admin
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == VERSION_KEYS | {"version_id"} and body["version_id"] == body["id"]
    assert (body["version"], body["policy_id"]) == (2, policy_id)
    events = [p for stream, p in await outbox(engine) if stream == "caracal.changes"]
    assert {"event": "policy.version_created", "entity_id": policy_id}.items() <= events[-1].items()


async def test_many_concurrent_version_creates_number_2_to_n_plus_1_without_duplicates(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """max+1 under the policy's advisory lock: concurrent writers each get their own number."""
    zone = await make_zone(client, admin)
    policy_id = await make_policy(client, admin, zone["id"])
    writers = 16
    responses = await asyncio.gather(
        *(
            client.post(
                policies_url(zone["id"], policy_id, "versions"),
                json={"content": f"{DENY_ALL}# writer {n}\n"},
                headers=admin,
            )
            for n in range(writers)
        )
    )
    assert [r.status_code for r in responses] == [201] * writers
    assert sorted(r.json()["version"] for r in responses) == list(range(2, writers + 2))
    async with engine.connect() as conn:
        numbers = (await conn.execute(text("SELECT version FROM policy_versions ORDER BY version"))).scalars()
        assert list(numbers) == list(range(1, writers + 2))


@pytest.mark.parametrize("statement", ["UPDATE {t} SET content_sha256 = 'x'", "DELETE FROM {t}"])
async def test_the_database_refuses_to_change_or_delete_a_policy_version(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine, statement: str
) -> None:
    """The immutability trigger (CONTRACT.md §4.5) refuses UPDATE and DELETE from any client."""
    zone = await make_zone(client, admin)
    await make_policy(client, admin, zone["id"])
    with pytest.raises(Exception, match="policy_versions rows are immutable"):
        async with engine.begin() as conn:
            await conn.execute(text(statement.format(t="policy_versions")))
    assert await count_rows(engine, "policy_versions") == 1


async def test_a_zone_token_sees_only_its_own_zones_policies(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """Another zone's policy is 404 even for a global token (every statement filters by zone)."""
    zone, other = await make_zone(client, admin), await make_zone(client, admin, name="Other")
    policy_id = await make_policy(client, admin, zone["id"])
    assert (await client.get(policies_url(other["id"], policy_id), headers=admin)).status_code == 404
    assert (await client.get(policies_url(other["id"]), headers=admin)).json() == []
