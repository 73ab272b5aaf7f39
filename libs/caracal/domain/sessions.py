"""Sessions (the STS's table): revoking them in batches, one `caracal.sessions.revoke` event each."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import ColumnElement, Update, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from caracal.db.tables.sessions import sessions
from caracal.events import SESSIONS_REVOKE, Scalar
from caracal.outbox import record_events

REVOKE_BATCH = 1000


def _revoke_batch(zone_id: str, matching: tuple[ColumnElement[bool], ...], size: int) -> Update:
    """The oldest `size` active matching sessions of the zone, locked (sessions another transaction
    holds, e.g. the STS, are skipped rather than waited for) and revoked."""
    chosen = (
        select(sessions.c.id)
        .where(sessions.c.zone_id == zone_id, sessions.c.status == "active", *matching)
        .order_by(sessions.c.created_at, sessions.c.id)
        .limit(size)
        .with_for_update(skip_locked=True)
    )
    return (
        update(sessions)
        .where(sessions.c.zone_id == zone_id, sessions.c.id.in_(chosen.scalar_subquery()))
        .values(status="revoked")
        .returning(sessions.c.id, sessions.c.created_at)
    )


async def revoke_sessions(
    conn: AsyncConnection,
    zone_id: str,
    *matching: ColumnElement[bool],
    reason: str,
    extra: Mapping[str, Scalar] | None = None,
    request_id: str | None = None,
    batch: int = REVOKE_BATCH,
) -> int:
    """Revoke the zone's active sessions that match, oldest first, `batch` at a time, in the caller's
    transaction; each gets one `caracal.sessions.revoke` entry `{zone_id, session_id, reason, **extra}`
    (top-level fields: what the STS and the Gateway read). Returns how many were revoked."""
    statement = _revoke_batch(zone_id, matching, batch)
    revoked = 0
    while True:
        rows: list[Any] = list((await conn.execute(statement)).all())
        rows.sort(key=lambda row: (row.created_at, row.id))  # RETURNING has no order of its own
        payloads = [
            {"zone_id": zone_id, "session_id": row.id, "reason": reason, **(extra or {})} for row in rows
        ]
        await record_events(conn, SESSIONS_REVOKE, payloads, request_id=request_id)
        revoked += len(rows)
        if len(rows) < batch:
            return revoked


async def revoke_subject_sessions(
    conn: AsyncConnection,
    zone_id: str,
    subject_id: str,
    *,
    reason: str,
    extra: Mapping[str, Scalar] | None = None,
    request_id: str | None = None,
) -> int:
    """Every active session of one subject in the zone (CONTRACT.md §4.7: a grant's user)."""
    return await revoke_sessions(
        conn, zone_id, sessions.c.subject_id == subject_id, reason=reason, extra=extra, request_id=request_id
    )
