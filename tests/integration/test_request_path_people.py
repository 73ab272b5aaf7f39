"""Budgets of the step-up, team, invitation and decision-audit routes, counted at the Postgres wire
(tests/integration/wire_budget.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.people_rows import insert_audit_event, make_challenge, make_invitation, make_team
from tests.integration.wire_budget import ADMIN, Counted, measure

# Reads are their one statement. A write is BEGIN, its one statement (the zone checked inside an
# INSERT … SELECT, the satisfy rules inside the UPDATE), the change event, the audit row and COMMIT.
BUDGETS = {"get_one": 1, "get_list": 1, "write": 5}


def one_transaction(counted: Counted) -> bool:
    return [q.split()[0].upper().rstrip(";") for q in counted.wire.queries] == ["BEGIN", "COMMIT"]


async def _zone(counted: Counted) -> str:
    response = await counted.http.post("/v1/zones", json={"name": "People"}, headers=ADMIN)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def _read_budget(counted: Counted, url: str, budget: int) -> None:
    await measure(counted, "GET", url)
    assert await measure(counted, "GET", url) <= budget


async def test_step_up_reads_are_one_round_trip_and_satisfy_one_transaction(
    counted: Counted, engine: AsyncEngine
) -> None:
    zone_id = await _zone(counted)
    made = [await make_challenge(engine, zone_id) for _ in range(201)]
    base = f"/v1/zones/{zone_id}/step-up-challenges"
    await _read_budget(counted, base, BUDGETS["get_list"])
    await _read_budget(counted, f"{base}/{made[0]}", BUDGETS["get_one"])
    await measure(counted, "POST", f"{base}/{made[1]}/satisfy", {"approver_subject_id": "a"})
    spent = await measure(counted, "POST", f"{base}/{made[2]}/satisfy", {"approver_subject_id": "a"})
    assert spent <= BUDGETS["write"] and one_transaction(counted), spent


async def test_team_reads_are_one_round_trip_and_writes_one_transaction(counted: Counted) -> None:
    zone_id = await _zone(counted)
    base = f"/v1/zones/{zone_id}/teams"
    made = [await make_team(counted.http, ADMIN, zone_id) for _ in range(201)]
    await _read_budget(counted, base, BUDGETS["get_list"])
    await _read_budget(counted, f"{base}/{made[0]}", BUDGETS["get_one"])
    members = [{"id": f"u{n}", "role": "member"} for n in range(50)]
    for method, url, body, status in (
        ("POST", base, {"name": "Measured", "members": members}, 201),
        ("PATCH", f"{base}/{made[1]}", {"members": members}, 200),
        ("DELETE", f"{base}/{made[2]}", None, 204),
    ):
        spent = await measure(counted, method, url, body, expect=status)
        assert spent <= BUDGETS["write"] and one_transaction(counted), (method, spent)


async def test_invitation_reads_are_one_round_trip_and_writes_one_transaction(counted: Counted) -> None:
    zone_id = await _zone(counted)
    base = f"/v1/zones/{zone_id}/invitations"
    made = [await make_invitation(counted.http, ADMIN, zone_id) for _ in range(201)]
    await _read_budget(counted, base, BUDGETS["get_list"])
    body = {"email": "grace@example.com", "role": "viewer", "invited_by": "root"}
    assert await measure(counted, "POST", base, body, expect=201) <= BUDGETS["write"]
    assert one_transaction(counted)
    assert await measure(counted, "DELETE", f"{base}/{made[0]}", expect=204) <= BUDGETS["write"]
    assert one_transaction(counted)


async def test_decision_audit_reads_are_one_round_trip(counted: Counted, engine: AsyncEngine) -> None:
    zone_id = await _zone(counted)
    start = datetime.now(UTC) - timedelta(hours=1)
    for n in range(201):
        await insert_audit_event(
            engine, zone_id, request_id=f"r{n % 3}", occurred_at=start + timedelta(seconds=n)
        )
    base = f"/v1/zones/{zone_id}/audit"
    await _read_budget(counted, base, BUDGETS["get_list"])
    await _read_budget(counted, f"{base}?decision=allow&request_id=r1&limit=1000", BUDGETS["get_list"])
    await _read_budget(counted, f"{base}/by-request/r1", BUDGETS["get_one"])
    await _read_budget(counted, f"{base}/by-request/r1/explain", BUDGETS["get_one"])
