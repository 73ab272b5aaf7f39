"""Rows other services write (the STS's sessions and step-up challenges, the ingester's decision audit),
inserted with plain SQL as those services would; and the team and invitation makers of the API."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from caracal.ids import new_id


async def insert_session(engine: AsyncEngine, zone_id: str, subject_id: str | None = "user-1") -> str:
    session_id = new_id()
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO sessions (id, zone_id, session_type, subject_id, expires_at, authenticated_at)"
                " VALUES (:id, :zone_id, 'user', :subject_id, now() + interval '1 hour', now())"
            ),
            {"id": session_id, "zone_id": zone_id, "subject_id": subject_id},
        )
    return session_id


async def insert_challenge(
    engine: AsyncEngine,
    zone_id: str,
    session_id: str | None,
    *,
    expires_in: timedelta = timedelta(hours=1),
    metadata: dict[str, Any] | None = None,
    challenge_type: str = "human_approval",
) -> str:
    challenge_id = new_id()
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO step_up_challenges"
                " (id, zone_id, session_id, challenge_type, metadata_json, expires_at, principal_id)"
                " VALUES (:id, :zone_id, :session_id, :type, CAST(:metadata AS jsonb), now() + :expires_in,"
                " 'principal-1')"
            ),
            {
                "id": challenge_id,
                "zone_id": zone_id,
                "session_id": session_id,
                "type": challenge_type,
                "metadata": json.dumps(metadata or {"reason": "transfer"}),
                "expires_in": expires_in,
            },
        )
    return challenge_id


async def make_challenge(engine: AsyncEngine, zone_id: str) -> str:
    """A pending human-approval challenge of a new session of `user-1`, as the STS writes one."""
    return await insert_challenge(engine, zone_id, await insert_session(engine, zone_id))


async def insert_audit_event(engine: AsyncEngine, zone_id: str, **values: Any) -> str:
    """One decision audit row (in the table's default partition); `values` override the defaults."""
    row: dict[str, Any] = {
        "id": new_id(),
        "zone_id": zone_id,
        "event_type": "authorization.decision",
        "request_id": None,
        "decision": "allow",
        "evaluation_status": "ok",
        "policy_set_id": None,
        "policy_set_version_id": None,
        "manifest_sha": None,
        "occurred_at": datetime.now(UTC),
        **values,
    }
    jsonb = {name: json.dumps(row.pop(name, None)) for name in _JSONB}
    async with engine.begin() as conn:
        await conn.execute(
            text(
                f"INSERT INTO audit_events ({', '.join([*row, *jsonb])})"
                f" VALUES ({', '.join([*(f':{k}' for k in row), *(f'CAST(:{k} AS jsonb)' for k in jsonb)])})"
            ),
            {**row, **jsonb},
        )
    return str(row["id"])


_JSONB = ("metadata_json", "determining_policies_json", "diagnostics_json")


async def make_request_events(engine: AsyncEngine, zone_id: str) -> str:
    """A request with two decision events (allow, then deny) in the zone; its request id."""
    request_id = f"req-{new_id()}"
    start = datetime.now(UTC) - timedelta(minutes=1)
    await insert_audit_event(engine, zone_id, request_id=request_id, occurred_at=start)
    await insert_audit_event(
        engine, zone_id, request_id=request_id, decision="deny", occurred_at=start + timedelta(seconds=1)
    )
    return request_id


async def make_team(client: httpx.AsyncClient, admin: dict[str, str], zone_id: str, **body: Any) -> str:
    response = await client.post(
        f"/v1/zones/{zone_id}/teams",
        json={"name": f"Team {new_id()}", "members": [{"id": "u1", "role": "owner"}], **body},
        headers=admin,
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def make_invitation(client: httpx.AsyncClient, admin: dict[str, str], zone_id: str, **body: Any) -> str:
    response = await client.post(
        f"/v1/zones/{zone_id}/invitations",
        json={"email": "ada@example.com", "role": "admin", "invited_by": "root", **body},
        headers=admin,
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])
