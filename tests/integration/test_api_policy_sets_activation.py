"""Activation over HTTP: one active version per zone, the invalidation entry, If-Match, the error order."""

from __future__ import annotations

import asyncio
import json
from urllib.parse import quote

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.api_helpers import (
    count_rows,
    make_policy_set_version,
    make_policy_version,
    make_zone,
    outbox,
)

INVALIDATE = "caracal.policy.invalidate"


async def _zone(client: httpx.AsyncClient, admin: dict[str, str]) -> str:
    return str((await make_zone(client, admin))["id"])


async def _new_set(client: httpx.AsyncClient, admin: dict[str, str], zone_id: str, name: str) -> str:
    response = await client.post(f"/v1/zones/{zone_id}/policy-sets", json={"name": name}, headers=admin)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def _activate(
    client: httpx.AsyncClient, admin: dict[str, str], zone_id: str, set_id: str, body: object, **headers: str
) -> httpx.Response:
    url = f"/v1/zones/{zone_id}/policy-sets/{set_id}/activate"
    return await client.post(url, json=body, headers={**admin, **headers})


async def active_bindings(engine: AsyncEngine, zone_id: str) -> list[tuple[str, str]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT policy_set_id, active_version_id FROM policy_set_bindings"
                " WHERE zone_id = :zone AND active_version_id IS NOT NULL"
            ),
            {"zone": zone_id},
        )
        return [(row[0], row[1]) for row in rows]


async def test_activation_is_202_with_its_outbox_entry_and_status_url(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    zone_id = await _zone(client, admin)
    set_id = await _new_set(client, admin, zone_id, "A")
    version = await make_policy_set_version(client, admin, zone_id, set_id)
    before = len(await outbox(engine))
    response = await _activate(client, admin, zone_id, set_id, {"version_id": version, "other": 1})
    assert response.status_code == 202, response.text
    body = response.json()
    outbox_id = body["outbox_id"]
    assert body == {
        "activated": True,
        "version_id": version,
        "shadow_version_id": None,
        "outbox_id": outbox_id,
        "status_url": f"/v1/zones/{quote(zone_id)}/policy-sets/{quote(set_id)}/activation-status"
        f"?version_id={quote(version)}&outbox_id={quote(outbox_id)}",
    }
    assert (await outbox(engine))[before:] == [
        (INVALIDATE, {"zone_id": zone_id, "policy_set_id": set_id, "policy_set_version_id": version})
    ]
    assert await active_bindings(engine, zone_id) == [(set_id, version)]


async def test_a_shadow_version_is_bound_and_named_in_the_entry(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    zone_id = await _zone(client, admin)
    set_id = await _new_set(client, admin, zone_id, "A")
    active_id, shadow_id = [await make_policy_set_version(client, admin, zone_id, set_id) for _ in range(2)]
    response = await _activate(
        client, admin, zone_id, set_id, {"version_id": active_id, "shadow_version_id": shadow_id}
    )
    assert response.status_code == 202, response.text
    assert response.json()["shadow_version_id"] == shadow_id
    assert (await outbox(engine))[-1] == (
        INVALIDATE,
        {
            "zone_id": zone_id,
            "policy_set_id": set_id,
            "policy_set_version_id": active_id,
            "shadow_version_id": shadow_id,
        },
    )


async def test_activating_a_set_clears_every_other_set_of_the_zone_only(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """DESIGN.md A1: the STS's LIMIT 1 must find one row; other zones keep theirs."""
    zone_id, other_zone = await _zone(client, admin), await _zone(client, admin)
    first, second, elsewhere = (
        await _new_set(client, admin, zone_id, "A"),
        await _new_set(client, admin, zone_id, "B"),
        await _new_set(client, admin, other_zone, "A"),
    )
    versions = {
        set_id: await make_policy_set_version(client, admin, zone, set_id)
        for zone, set_id in ((zone_id, first), (zone_id, second), (other_zone, elsewhere))
    }
    await _activate(client, admin, other_zone, elsewhere, {"version_id": versions[elsewhere]})
    await _activate(client, admin, zone_id, first, {"version_id": versions[first]})
    assert (
        await _activate(client, admin, zone_id, second, {"version_id": versions[second]})
    ).status_code == 202
    assert await active_bindings(engine, zone_id) == [(second, versions[second])]
    assert await active_bindings(engine, other_zone) == [(elsewhere, versions[elsewhere])]
    got = await client.get(f"/v1/zones/{zone_id}/policy-sets/{first}", headers=admin)
    assert got.json()["active_version_id"] is None


async def test_many_concurrent_activations_leave_exactly_one_active_version(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    zone_id = await _zone(client, admin)
    policy = await make_policy_version(client, admin, zone_id)
    targets = []
    for n in range(6):
        set_id = await _new_set(client, admin, zone_id, f"S{n}")
        for _ in range(2):
            targets.append((set_id, await make_policy_set_version(client, admin, zone_id, set_id, policy)))
    answers = await asyncio.gather(
        *(_activate(client, admin, zone_id, set_id, {"version_id": version}) for set_id, version in targets)
    )
    assert [answer.status_code for answer in answers] == [202] * len(targets)
    bound = await active_bindings(engine, zone_id)
    assert len(bound) == 1 and bound[0] in targets
    entries = [payload for stream, payload in await outbox(engine) if stream == INVALIDATE]
    assert len(entries) == len(targets)
    # the last committed activation is the one bound (the entries follow commit order)
    async with engine.connect() as conn:
        last = (
            await conn.execute(
                text(
                    "SELECT payload_json FROM event_outbox WHERE stream_name = :s ORDER BY seq DESC LIMIT 1"
                ),
                {"s": INVALIDATE},
            )
        ).scalar_one()
    assert (last["policy_set_id"], last["policy_set_version_id"]) == bound[0]


async def test_if_match_makes_activation_a_compare_and_swap(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """The set's GET ETag is the If-Match of activation; activating moves it, so a second use is 412."""
    zone_id = await _zone(client, admin)
    set_id = await _new_set(client, admin, zone_id, "A")
    first_id, second_id = [await make_policy_set_version(client, admin, zone_id, set_id) for _ in range(2)]
    etag = (await client.get(f"/v1/zones/{zone_id}/policy-sets/{set_id}", headers=admin)).headers["etag"]
    ok = await _activate(client, admin, zone_id, set_id, {"version_id": first_id}, **{"If-Match": etag})
    assert ok.status_code == 202, ok.text
    events = await count_rows(engine, "event_outbox")
    stale = await _activate(client, admin, zone_id, set_id, {"version_id": second_id}, **{"If-Match": etag})
    assert (stale.status_code, stale.json()["error"]) == (412, "precondition_failed")
    assert stale.json()["title"] == "Precondition Failed"
    assert await active_bindings(engine, zone_id) == [(set_id, first_id)]
    assert await count_rows(engine, "event_outbox") == events
    fresh = (await client.get(f"/v1/zones/{zone_id}/policy-sets/{set_id}", headers=admin)).headers["etag"]
    assert fresh != etag
    moved = await _activate(client, admin, zone_id, set_id, {"version_id": second_id}, **{"If-Match": fresh})
    assert moved.status_code == 202
    unconditional = await _activate(client, admin, zone_id, set_id, {"version_id": first_id})
    assert unconditional.status_code == 202


async def test_activation_still_takes_the_active_version_tag_of_activation_status(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """The earlier If-Match form: `"none"` for an inactive set, `"<active version id>"` after."""
    zone_id = await _zone(client, admin)
    set_id = await _new_set(client, admin, zone_id, "A")
    first_id, second_id = [await make_policy_set_version(client, admin, zone_id, set_id) for _ in range(2)]
    ok = await _activate(client, admin, zone_id, set_id, {"version_id": first_id}, **{"If-Match": '"none"'})
    assert ok.status_code == 202, ok.text
    stale = await _activate(
        client, admin, zone_id, set_id, {"version_id": second_id}, **{"If-Match": '"none"'}
    )
    assert (stale.status_code, stale.json()["error"]) == (412, "precondition_failed")
    status = await client.get(f"/v1/zones/{zone_id}/policy-sets/{set_id}/activation-status", headers=admin)
    assert status.headers["etag"] == f'"{first_id}"'
    tag = {"If-Match": status.headers["etag"]}
    assert (
        await _activate(client, admin, zone_id, set_id, {"version_id": second_id}, **tag)
    ).status_code == 202
    assert await active_bindings(engine, zone_id) == [(set_id, second_id)]


async def test_errors_come_in_the_contracts_order(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """400 body, 404 version, 422 its contract, 404 shadow, 422 the shadow's contract."""
    zone_id = await _zone(client, admin)
    set_id = await _new_set(client, admin, zone_id, "A")
    good = await make_policy_set_version(client, admin, zone_id, set_id)
    other_set = await _new_set(client, admin, zone_id, "B")
    foreign = await make_policy_set_version(client, admin, zone_id, other_set)
    broken = await _broken_version(engine, set_id)
    cases = [
        ({}, 400, "invalid_body"),
        ({"version_id": ""}, 400, "invalid_body"),
        ({"version_id": "missing", "shadow_version_id": "missing"}, 404, "version_not_found"),
        ({"version_id": foreign}, 404, "version_not_found"),
        ({"version_id": broken, "shadow_version_id": "missing"}, 422, "invalid_policy_contract"),
        ({"version_id": good, "shadow_version_id": "missing"}, 404, "shadow_version_not_found"),
        ({"version_id": good, "shadow_version_id": broken}, 422, "invalid_shadow_policy_contract"),
    ]
    for body, status, code in cases:
        response = await _activate(client, admin, zone_id, set_id, body)
        assert (response.status_code, response.json()["error"]) == (status, code), (body, response.text)
    detail = (await _activate(client, admin, zone_id, set_id, {"version_id": broken})).json()["detail"]
    assert detail == "policy set manifest references missing policy versions"
    assert await active_bindings(engine, zone_id) == []
    assert [stream for stream, _ in await outbox(engine) if stream == INVALIDATE] == []


async def _broken_version(engine: AsyncEngine, set_id: str) -> str:
    """A version naming a policy version that does not exist (as only a foreign writer could store)."""
    manifest = json.dumps([{"policy_version_id": "nowhere"}], separators=(",", ":"))
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO policy_set_versions (id, policy_set_id, version, manifest_json,"
                " manifest_sha256, schema_version, created_by)"
                " VALUES ('broken', :set, 99, CAST(:m AS jsonb), 'x', '2026-05-20', 'x')"
            ),
            {"set": set_id, "m": manifest},
        )
    return "broken"


async def test_an_archived_set_cannot_be_activated(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    zone_id = await _zone(client, admin)
    set_id = await _new_set(client, admin, zone_id, "A")
    version = await make_policy_set_version(client, admin, zone_id, set_id)
    assert (
        await client.delete(f"/v1/zones/{zone_id}/policy-sets/{set_id}", headers=admin)
    ).status_code == 204
    response = await _activate(client, admin, zone_id, set_id, {"version_id": version})
    assert (response.status_code, response.json()["error"]) == (404, "version_not_found")
