"""GET …/sessions (CONTRACT.md §4.9, §3.2) and the explicit revocation routes: a session with its
descendants, every active session of a subject with theirs, each with its revoke entry."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.api_helpers import make_zone, outbox
from tests.integration.session_rows import insert_session

REVOKE = "caracal.sessions.revoke"


async def _statuses(engine: AsyncEngine, *ids: str) -> list[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT id, status FROM sessions WHERE id = ANY(:ids)"), {"ids": list(ids)}
        )
        found = {row.id: row.status for row in rows}
    return [found[i] for i in ids]


async def _revoke_entries(engine: AsyncEngine) -> list[dict[str, Any]]:
    return [payload for stream, payload in await outbox(engine) if stream == REVOKE]


async def _page(client: httpx.AsyncClient, admin: dict[str, str], zone_id: str, query: str = "") -> Any:
    response = await client.get(f"/v1/zones/{zone_id}/sessions{query}", headers=admin)
    assert response.status_code == 200, response.text
    assert "link" not in response.headers
    return response.json()


async def test_sessions_list_newest_first_in_the_rows_envelope_with_the_contract_fields(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    zone = (await make_zone(client, admin))["id"]
    older = await insert_session(engine, zone, age=timedelta(minutes=2))
    newer = await insert_session(engine, zone, subject_id=None, parent_id=older, session_type="application")
    body = await _page(client, admin, zone)
    assert body["next_cursor"] is None
    assert [row["id"] for row in body["rows"]] == [newer, older]
    row = body["rows"][0]
    assert set(row) == {
        "id", "zone_id", "session_type", "subject_id", "parent_id", "status",
        "expires_at", "authenticated_at", "created_at",
    }  # fmt: skip
    assert (row["zone_id"], row["session_type"], row["subject_id"], row["parent_id"], row["status"]) == (
        zone, "application", None, older, "active",
    )  # fmt: skip
    assert row["created_at"].endswith("Z") and len(row["expires_at"]) == 24


async def test_sessions_pages_carry_next_cursor_exactly_when_full_and_never_repeat_a_row(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    zone = (await make_zone(client, admin))["id"]
    made = [await insert_session(engine, zone, age=timedelta(seconds=10 - n)) for n in range(4)]
    seen, cursor, fulls = [], "", []
    while True:
        body = await _page(client, admin, zone, f"?limit=2{cursor}")
        seen += [row["id"] for row in body["rows"]]
        fulls.append((len(body["rows"]), body["next_cursor"] is not None))
        if body["next_cursor"] is None:
            break
        cursor = f"&cursor={body['next_cursor']}"
    assert seen == made[::-1]
    assert fulls == [(2, True), (2, True), (0, False)]


async def test_sessions_default_page_is_100(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    zone = (await make_zone(client, admin))["id"]
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO sessions (id, zone_id, session_type, expires_at, authenticated_at)"
                " SELECT 's-' || n, :zone, 'user', now() + interval '1 hour', now()"
                " FROM generate_series(1, 101) n"
            ),
            {"zone": zone},
        )
    body = await _page(client, admin, zone)
    assert len(body["rows"]) == 100 and body["next_cursor"] is not None


async def test_sessions_filter_by_status_and_subject(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    zone = (await make_zone(client, admin))["id"]
    alice = await insert_session(engine, zone, subject_id="alice")
    alice_old = await insert_session(engine, zone, subject_id="alice", status="expired")
    bob = await insert_session(engine, zone, subject_id="bob", status="revoked")

    async def ids(query: str) -> set[str]:
        return {row["id"] for row in (await _page(client, admin, zone, query))["rows"]}

    assert await ids("?subject_id=alice") == {alice, alice_old}
    assert await ids("?status=revoked") == {bob}
    assert await ids("?status=expired&subject_id=alice") == {alice_old}
    assert await ids("?status=active&subject_id=bob") == set()


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("?limit=0", "invalid_query"),
        ("?limit=1001", "invalid_query"),
        ("?limit=ten", "invalid_query"),
        ("?cursor=", "invalid_query"),
        ("?cursor=" + "a" * 513, "invalid_query"),
        ("?cursor=not-a-cursor", "invalid_cursor"),
        ("?status=dormant", "invalid_query"),
        ("?subject_id=", "invalid_query"),
        ("?limit=0&status=dormant", "invalid_query"),
    ],
)
async def test_sessions_list_refuses_bad_queries(
    client: httpx.AsyncClient, admin: dict[str, str], query: str, code: str
) -> None:
    zone = (await make_zone(client, admin))["id"]
    response = await client.get(f"/v1/zones/{zone}/sessions{query}", headers=admin)
    assert (response.status_code, response.json()["error"]) == (400, code)


async def test_sessions_list_of_a_missing_zone_is_empty(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    assert await _page(client, admin, "no-such-zone") == {"rows": [], "next_cursor": None}


async def test_revoking_a_session_revokes_its_descendants_and_nothing_else(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """Root, child, grandchild (reached through an already revoked child) go; parent, sibling stay."""
    zone = (await make_zone(client, admin))["id"]
    parent = await insert_session(engine, zone, age=timedelta(minutes=5))
    root = await insert_session(engine, zone, parent_id=parent, age=timedelta(minutes=4))
    child = await insert_session(engine, zone, parent_id=root, age=timedelta(minutes=3))
    gone = await insert_session(engine, zone, parent_id=root, status="revoked", age=timedelta(minutes=3))
    grandchild = await insert_session(engine, zone, parent_id=gone, age=timedelta(minutes=2))
    sibling = await insert_session(engine, zone, parent_id=parent, age=timedelta(minutes=1))
    response = await client.post(f"/v1/zones/{zone}/sessions/{root}/revoke", headers=admin)
    assert response.status_code == 200, response.text
    assert response.json() == {"id": root, "status": "revoked", "revoked_sessions": 3}
    assert await _statuses(engine, parent, root, child, gone, grandchild, sibling) == [
        "active", "revoked", "revoked", "revoked", "revoked", "active",
    ]  # fmt: skip
    assert await _revoke_entries(engine) == [
        {"zone_id": zone, "session_id": session, "reason": "admin_revoked"}
        for session in (root, child, grandchild)
    ]


async def test_revoking_a_session_again_changes_nothing_and_writes_no_entry(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    zone = (await make_zone(client, admin))["id"]
    expired = await insert_session(engine, zone, status="expired")
    url = f"/v1/zones/{zone}/sessions/{expired}/revoke"
    response = await client.post(url, headers=admin)
    assert response.json() == {"id": expired, "status": "expired", "revoked_sessions": 0}
    assert await _revoke_entries(engine) == []


async def test_revoking_an_unknown_session_is_404_session_not_found(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    zone = (await make_zone(client, admin))["id"]
    response = await client.post(f"/v1/zones/{zone}/sessions/nope/revoke", headers=admin)
    assert (response.status_code, response.json()["error"]) == (404, "session_not_found")
    assert await _revoke_entries(engine) == []


async def test_revoking_a_subject_revokes_its_active_sessions_with_descendants(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    zone = (await make_zone(client, admin))["id"]
    other_zone = (await make_zone(client, admin, name="Other"))["id"]
    first = await insert_session(engine, zone, subject_id="alice", age=timedelta(minutes=3))
    delegated = await insert_session(
        engine, zone, subject_id="tool", parent_id=first, age=timedelta(minutes=2)
    )
    second = await insert_session(engine, zone, subject_id="alice", age=timedelta(minutes=1))
    bob = await insert_session(engine, zone, subject_id="bob")
    elsewhere = await insert_session(engine, other_zone, subject_id="alice")
    response = await client.post(
        f"/v1/zones/{zone}/sessions/revoke", json={"subject_id": "alice"}, headers=admin
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"subject_id": "alice", "revoked_sessions": 3}
    assert await _statuses(engine, first, delegated, second, bob, elsewhere) == [
        "revoked", "revoked", "revoked", "active", "active",
    ]  # fmt: skip
    entries = await _revoke_entries(engine)
    assert [e["session_id"] for e in entries] == [first, delegated, second]
    assert {(e["zone_id"], e["reason"]) for e in entries} == {(zone, "admin_revoked")}


@pytest.mark.parametrize(
    "body", [{}, {"subject_id": ""}, {"subject_id": 7}, {"subject_id": "a", "why": "x"}, []]
)
async def test_revoking_a_subject_refuses_a_bad_body(
    client: httpx.AsyncClient, admin: dict[str, str], body: Any
) -> None:
    zone = (await make_zone(client, admin))["id"]
    response = await client.post(f"/v1/zones/{zone}/sessions/revoke", json=body, headers=admin)
    assert (response.status_code, response.json()["error"]) == (400, "invalid_session_revoke")


async def test_revoking_a_subject_in_a_missing_zone_is_404_even_with_a_bad_body(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    for body in ({"subject_id": "alice"}, {}):
        response = await client.post("/v1/zones/nowhere/sessions/revoke", json=body, headers=admin)
        assert (response.status_code, response.json()["error"]) == (404, "zone_not_found")


async def test_a_revocation_writes_its_audit_row_in_its_transaction(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    zone = (await make_zone(client, admin))["id"]
    session = await insert_session(engine, zone)
    await client.post(f"/v1/zones/{zone}/sessions/{session}/revoke", headers=admin)
    async with engine.connect() as conn:
        query = text(
            "SELECT status_code, zone_id FROM admin_audit_events WHERE method = 'POST' AND path LIKE :p"
        )
        rows = (await conn.execute(query, {"p": "%/sessions/%/revoke"})).all()
    assert [tuple(r) for r in rows] == [(200, zone)]
