"""The admin audit trail (admin_audit_events), written best effort or inside a transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from caracal.db.tables.audit import admin_audit_events
from caracal.domain.context import Caller
from caracal.ids import new_id

_INSERT = insert(admin_audit_events)  # built once: the parameters carry the row
RLS_PAYLOAD = {"rls_bypass": True, "rls_mode": "control_plane_wildcard", "rls_zone_guc": "*"}
ENTITY_SEGMENTS = frozenset(
    {
        "zones",
        "applications",
        "resources",
        "providers",
        "provider-grants",
        "policies",
        "policy-sets",
        "policy-templates",
        "grants",
        "invitations",
        "teams",
        "step-up-challenges",
        "admin-tokens",
        "outbox",
    }
)


def entity_of(path: str) -> tuple[str | None, str | None, str | None]:
    """(zone_id, entity_type, entity_id) of a /v1 path, as the contract's audit trail names them."""
    segments = [s for s in path.split("?", 1)[0].split("/") if s]
    zone_id = segments[2] if len(segments) > 2 and segments[1] == "zones" else None
    entity_type = entity_id = None
    for index, segment in enumerate(segments[:-1]):
        if segment in ENTITY_SEGMENTS:
            entity_type, entity_id = segment, segments[index + 1]
    return zone_id, entity_type, entity_id


def audit_row(
    caller: Caller,
    *,
    action: str,
    method: str | None = None,
    path: str | None = None,
    status_code: int | None = None,
    zone_id: str | None = None,
    entity_type: str | None = None,
    entity_id: str | None = None,
    payload: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The admin_audit_events row for one action of `caller`."""
    actor = caller.actor
    return {
        "id": new_id(),
        "request_id": caller.request_id,
        "actor_id": actor.id if actor else None,
        "actor_name": actor.name if actor else None,
        "actor_scope": actor.scope if actor else None,
        "action": action,
        "method": method,
        "path": path,
        "zone_id": zone_id,
        "entity_type": entity_type,
        "entity_id": entity_id,
        "status_code": status_code,
        "payload_json": {**RLS_PAYLOAD, **(payload or {})},
    }


def request_audit_row(caller: Caller, method: str, url: str, status_code: int) -> dict[str, Any]:
    """The contract's row for one /v1 request (`url` as sent, query included)."""
    zone_id, entity_type, entity_id = entity_of(url)
    return audit_row(
        caller,
        action=f"{method} {url}",
        method=method,
        path=url,
        status_code=status_code,
        zone_id=zone_id,
        entity_type=entity_type,
        entity_id=entity_id,
    )


async def insert_audit_rows(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    """Rows from audit_row(), in one statement."""
    if len(rows) == 1:
        await conn.execute(_INSERT, rows[0])
    elif rows:
        await conn.execute(_INSERT, rows)


async def record_audit(conn: AsyncConnection, caller: Caller, **fields: Any) -> None:
    """One audit row in the caller's transaction (see audit_row for the fields)."""
    await insert_audit_rows(conn, [audit_row(caller, **fields)])
