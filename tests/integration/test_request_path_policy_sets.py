"""Policy sets' budgets, counted at the Postgres wire: round trips and connections per request."""

from __future__ import annotations

from tests.integration.api_helpers import ALLOW_READS
from tests.integration.wire_budget import ADMIN, Counted, measure

# Round trips once the token is cached and the statements prepared. A write is BEGIN, its
# statements, the outbox row(s), the audit row and COMMIT. Reads are autocommit on one connection.
BUDGETS = {
    "get_one": 1,
    "get_list": 1,
    "get_version": 1,
    "list_versions": 1,
    "bundle": 1,
    # two statements read through SQLAlchemy (JSON columns), so inside BEGIN/COMMIT
    "activation_status": 4,  # the binding, then the outbox row
    "simulate": 5,  # the version and its policies (evaluation holds no connection), then the POST's audit row
    "post_set": 5,  # the set and its binding in one statement
    "post_version": 7,  # set row lock, the named versions, insert
    "activate": 11,  # version, its policies, zone lock, If-Match read, FOR SHARE, clear, bind
    "delete_active": 8,  # zone lock, archive, clear, two entries
}


async def _post(counted: Counted, path: str, body: object, expect: int = 201) -> dict[str, str]:
    response = await counted.http.post(path, json=body, headers=ADMIN)
    assert response.status_code == expect, response.text
    created: dict[str, str] = response.json()
    return created


async def _world(counted: Counted) -> tuple[str, str, str]:
    zone_id = (await _post(counted, "/v1/zones", {"name": "Budget"}))["id"]
    policy = await _post(counted, f"/v1/zones/{zone_id}/policies", {"name": "p", "content": ALLOW_READS})
    set_id = (await _post(counted, f"/v1/zones/{zone_id}/policy-sets", {"name": "s"}))["id"]
    manifest = {"manifest": [{"policy_version_id": policy["version"]["id"]}]}  # type: ignore[index]
    version = (await _post(counted, f"/v1/zones/{zone_id}/policy-sets/{set_id}/versions", manifest))["id"]
    return zone_id, set_id, version


async def test_reads_are_one_round_trip_each_whatever_the_page_size(counted: Counted) -> None:
    zone_id, set_id, version = await _world(counted)
    for n in range(5):
        await _post(counted, f"/v1/zones/{zone_id}/policy-sets", {"name": f"more{n}"})
    base = f"/v1/zones/{zone_id}/policy-sets"
    reads = {
        "get_one": f"{base}/{set_id}",
        "get_list": f"{base}?limit=5",
        "get_version": f"{base}/{set_id}/versions/{version}",
        "list_versions": f"{base}/{set_id}/versions",
        "bundle": f"{base}/{set_id}/versions/{version}/bundle",
    }
    for name, url in reads.items():
        await measure(counted, "GET", url)
        assert await measure(counted, "GET", url) <= BUDGETS[name], (name, counted.wire.queries)


async def test_simulate_and_activation_status_within_their_budgets(counted: Counted) -> None:
    zone_id, set_id, version = await _world(counted)
    base = f"/v1/zones/{zone_id}/policy-sets/{set_id}"
    body = {"version_id": version, "input": {"action": "read", "requested_scopes": ["read"]}}
    await measure(counted, "POST", f"{base}/simulate", body)
    assert await measure(counted, "POST", f"{base}/simulate", body) <= BUDGETS["simulate"], (
        counted.wire.queries
    )
    await _post(counted, f"{base}/activate", {"version_id": version}, expect=202)
    await measure(counted, "GET", f"{base}/activation-status")
    assert await measure(counted, "GET", f"{base}/activation-status") <= BUDGETS["activation_status"]


async def test_mutations_are_one_transaction_within_their_budgets(counted: Counted) -> None:
    zone_id, set_id, version = await _world(counted)
    base = f"/v1/zones/{zone_id}/policy-sets"
    await measure(counted, "POST", base, {"name": "warm"}, expect=201)
    assert await measure(counted, "POST", base, {"name": "counted"}, expect=201) <= BUDGETS["post_set"]
    assert [q.split()[0].upper().rstrip(";") for q in counted.wire.queries] == ["BEGIN", "COMMIT"]
    policy_version = (await counted.http.get(f"{base}/{set_id}/versions/{version}", headers=ADMIN)).json()
    manifest = {"manifest": [{"policy_version_id": policy_version["policies"][0]}]}
    await measure(counted, "POST", f"{base}/{set_id}/versions", manifest, expect=201)
    assert (
        await measure(counted, "POST", f"{base}/{set_id}/versions", manifest, expect=201)
        <= BUDGETS["post_version"]
    ), counted.wire.queries
    await measure(counted, "POST", f"{base}/{set_id}/activate", {"version_id": version}, expect=202)
    spent = await measure(counted, "POST", f"{base}/{set_id}/activate", {"version_id": version}, expect=202)
    assert spent <= BUDGETS["activate"], counted.wire.queries
    assert await measure(counted, "DELETE", f"{base}/{set_id}", expect=204) <= BUDGETS["delete_active"]
