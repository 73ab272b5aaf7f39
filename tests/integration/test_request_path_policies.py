"""The policy routes' budgets, counted at the Postgres wire: round trips and connections per request.

Rego is judged in a worker before the transaction opens, so no statement waits on it.
"""

from __future__ import annotations

from typing import Any

from tests.integration.api_helpers import ALLOW_READS
from tests.integration.wire_budget import ADMIN, Counted, measure

# Round trips once the token is cached and the statements are prepared on the connection.
# A write is BEGIN, its statements, the outbox row, the audit row and COMMIT.
BUDGETS = {
    "get_one": 1,  # the policy and its versions joined
    "get_list": 1,
    "post": 7,  # the zone, the policy, its version 1
    "post_version": 6,  # the advisory lock with the policy's existence, the max+1 insert
    "delete": 5,  # the archive
}


async def _ok(counted: Counted, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
    response = await counted.http.request(method, path, json=body, headers=ADMIN)
    assert response.status_code == expect, response.text
    return response.json() if response.content else None


async def _policy(counted: Counted, zone_id: str, name: str) -> str:
    body = {"name": name, "content": ALLOW_READS}
    return str((await _ok(counted, "POST", f"/v1/zones/{zone_id}/policies", body, 201))["id"])


def _statements(counted: Counted) -> list[str]:
    return [q.split()[0].upper().rstrip(";") for q in counted.wire.queries]


async def test_get_one_policy_is_one_round_trip_with_all_its_versions(counted: Counted) -> None:
    zone_id = (await _ok(counted, "POST", "/v1/zones", {"name": "Budget"}, 201))["id"]
    policy_id = await _policy(counted, zone_id, "one")
    for _ in range(5):
        await _ok(
            counted,
            "POST",
            f"/v1/zones/{zone_id}/policies/{policy_id}/versions",
            {"content": ALLOW_READS},
            201,
        )
    path = f"/v1/zones/{zone_id}/policies/{policy_id}"
    await measure(counted, "GET", path)
    assert await measure(counted, "GET", path) <= BUDGETS["get_one"]
    assert "BEGIN" not in _statements(counted)


async def test_policy_list_is_one_round_trip_whatever_its_size(counted: Counted) -> None:
    zone_id = (await _ok(counted, "POST", "/v1/zones", {"name": "Budget"}, 201))["id"]
    for n in range(20):
        await _policy(counted, zone_id, f"list-{n}")
    path = f"/v1/zones/{zone_id}/policies"
    await measure(counted, "GET", f"{path}?limit=1")
    assert await measure(counted, "GET", f"{path}?limit=1") <= BUDGETS["get_list"]
    assert await measure(counted, "GET", f"{path}?limit=20") <= BUDGETS["get_list"]


async def test_writes_are_one_transaction_each_within_their_budgets(counted: Counted) -> None:
    """POST, POST versions and DELETE: one BEGIN, one COMMIT, their statements in between."""
    zone_id = (await _ok(counted, "POST", "/v1/zones", {"name": "Budget"}, 201))["id"]
    base = f"/v1/zones/{zone_id}/policies"
    await measure(counted, "POST", base, {"name": "warm", "content": ALLOW_READS}, expect=201)
    assert (
        await measure(counted, "POST", base, {"name": "p", "content": ALLOW_READS}, expect=201)
        <= BUDGETS["post"]
    )
    assert [s for s in _statements(counted) if s in ("BEGIN", "COMMIT")] == ["BEGIN", "COMMIT"]
    policy_id = await _policy(counted, zone_id, "versioned")
    versions = f"{base}/{policy_id}/versions"
    await measure(counted, "POST", versions, {"content": ALLOW_READS}, expect=201)
    assert (
        await measure(counted, "POST", versions, {"content": ALLOW_READS}, expect=201)
        <= BUDGETS["post_version"]
    )
    first, second = await _policy(counted, zone_id, "d1"), await _policy(counted, zone_id, "d2")
    await measure(counted, "DELETE", f"{base}/{first}", expect=204)
    assert await measure(counted, "DELETE", f"{base}/{second}", expect=204) <= BUDGETS["delete"]
    assert [s for s in _statements(counted) if s in ("BEGIN", "COMMIT")] == ["BEGIN", "COMMIT"]
