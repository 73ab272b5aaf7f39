"""The sessions routes' and DCR shutdown's budgets, counted at the Postgres wire
(tests/integration/wire_budget.py)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.session_rows import insert_agent, insert_edge, insert_session
from tests.integration.wire_budget import ADMIN, Counted, measure

# A write is BEGIN, its statements, the outbox row(s), the audit row and COMMIT.
BUDGETS = {
    "get_list": 1,
    # BEGIN, the tree revoked, its entries (one statement per 1000), the session read back, audit, COMMIT
    "revoke_one": 6,
    # BEGIN, the zone checked, the trees revoked, their entries, audit, COMMIT
    "revoke_subject": 6,
    # BEGIN, zone locked, live DCR locked, apps archived, their change events, sessions revoked,
    # their entries, agents terminated, edges revoked, lifecycle entries, agent and edge entries,
    # the shutdown's audit row, zone updated, zone.updated, the request's audit row, COMMIT
    "revoke_live": 16,
}


def one_transaction(counted: Counted) -> bool:
    return [q.split()[0].upper().rstrip(";") for q in counted.wire.queries] == ["BEGIN", "COMMIT"]


async def _zone(counted: Counted, **body: object) -> str:
    response = await counted.http.post("/v1/zones", json={"name": "Z", **body}, headers=ADMIN)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def _many_sessions(engine: AsyncEngine, zone: str, count: int, subject: str = "user-1") -> None:
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO sessions (id, zone_id, session_type, subject_id, expires_at, authenticated_at)"
                " SELECT :subject || '-' || n, :zone, 'user', :subject, now() + interval '1 hour', now()"
                " FROM generate_series(1, :count) n"
            ),
            {"zone": zone, "subject": subject, "count": count},
        )


async def test_a_page_of_1000_sessions_is_one_round_trip(counted: Counted, engine: AsyncEngine) -> None:
    zone = await _zone(counted)
    await _many_sessions(engine, zone, 1001)
    for query in ("?limit=1000", "?limit=1000&status=active&subject_id=user-1"):
        url = f"/v1/zones/{zone}/sessions{query}"
        await measure(counted, "GET", url)
        assert await measure(counted, "GET", url) <= BUDGETS["get_list"]


async def test_revoking_a_session_tree_is_one_transaction(counted: Counted, engine: AsyncEngine) -> None:
    zone = await _zone(counted)
    warm_root, root = await insert_session(engine, zone), await insert_session(engine, zone)
    for parent in (warm_root, root):
        await insert_session(engine, zone, parent_id=parent)
    await measure(counted, "POST", f"/v1/zones/{zone}/sessions/{warm_root}/revoke")
    assert await measure(counted, "POST", f"/v1/zones/{zone}/sessions/{root}/revoke") <= BUDGETS["revoke_one"]
    assert one_transaction(counted)


async def test_revoking_a_subjects_2500_sessions_is_one_transaction(
    counted: Counted, engine: AsyncEngine
) -> None:
    """Entries go 1000 per statement: two more round trips for 2,500 sessions than for a few."""
    zone = await _zone(counted)
    await _many_sessions(engine, zone, 3, subject="warm")
    await _many_sessions(engine, zone, 2500, subject="busy")
    url = f"/v1/zones/{zone}/sessions/revoke"
    await measure(counted, "POST", url, {"subject_id": "warm"})
    assert await measure(counted, "POST", url, {"subject_id": "busy"}) <= BUDGETS["revoke_subject"] + 2
    assert one_transaction(counted)


async def test_revoke_live_is_one_transaction(counted: Counted, engine: AsyncEngine) -> None:
    """Two DCR apps with sessions, agents and an edge: a fixed number of statements, one transaction."""
    zone = await _zone(counted, dcr_enabled=True)
    apps = []
    for name in ("a", "b"):
        response = await counted.http.post(
            f"/v1/zones/{zone}/applications/dcr", json={"name": name}, headers=ADMIN
        )
        apps.append(response.json()["id"])
    sessions = [
        await insert_session(
            engine, zone, subject_id=app, session_type="application", age=timedelta(minutes=1)
        )
        for app in apps
    ]
    agents = [await insert_agent(engine, zone, app, s) for app, s in zip(apps, sessions, strict=True)]
    await insert_edge(engine, zone, agents[0], agents[1], apps[0])
    body = {"dcr_enabled": False, "dcr_shutdown": "revoke_live"}
    assert await measure(counted, "PATCH", f"/v1/zones/{zone}", body) <= BUDGETS["revoke_live"]
    assert one_transaction(counted)
