"""What expires by the database clock (the reaper's rules, CONTRACT.md §6 and DESIGN.md A4): DCR
applications a day past their expiry are archived, active sessions past `expires_at` become
`expired`; in bounded batches that skip rows others hold, one `caracal.changes` event per row."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Integer, Update, bindparam, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from caracal.db.tables.applications import applications
from caracal.db.tables.sessions import sessions
from caracal.events import CHANGES
from caracal.outbox import change_payload, record_events

DCR_GC_BATCH = 500  # the original's batch (CONTRACT.md §6)
SESSION_EXPIRY_BATCH = 500
_BATCH = bindparam("batch", type_=Integer)

# oldest expiry first; rows another transaction holds (an API archiving it, another reaper) are
# skipped, so two collectors never archive one application twice
_EXPIRED_DCR = (
    select(applications.c.id)
    .where(
        applications.c.registration_method == "dcr",
        applications.c.expires_at.is_not(None),
        applications.c.expires_at < func.now() - text("interval '24 hours'"),
        applications.c.archived_at.is_(None),
    )
    .order_by(applications.c.expires_at)
    .limit(_BATCH)
    .with_for_update(skip_locked=True)
)
# A CTE, not `id IN (subquery)`: Postgres may rescan such a subquery per outer row, and each
# rescan skips the rows already locked and takes the next ones, so LIMIT would not bound the batch;
# a CTE holding FOR UPDATE runs once.
_CHOSEN_DCR = _EXPIRED_DCR.cte("chosen_dcr")
_COLLECT_DCR = (
    update(applications)
    .where(applications.c.id == _CHOSEN_DCR.c.id, applications.c.archived_at.is_(None))
    .values(archived_at=func.now())
    .returning(applications.c.id, applications.c.zone_id)
)
_EXPIRED_SESSIONS = (
    select(sessions.c.id)
    .where(sessions.c.status == "active", sessions.c.expires_at < func.now())
    .order_by(sessions.c.expires_at)
    .limit(_BATCH)
    .with_for_update(skip_locked=True)
)
_CHOSEN_SESSIONS = _EXPIRED_SESSIONS.cte("chosen_sessions")
_EXPIRE_SESSIONS = (
    update(sessions)
    .where(sessions.c.id == _CHOSEN_SESSIONS.c.id, sessions.c.status == "active")
    .values(status="expired")
    .returning(sessions.c.id, sessions.c.zone_id)
)


async def _changed(conn: AsyncConnection, statement: Update, batch: int, event: str) -> int:
    rows: list[Any] = sorted((await conn.execute(statement, {"batch": batch})).all(), key=lambda r: r.id)
    entity = event.partition(".")[0]
    payloads = [change_payload(event, entity_type=entity, entity_id=r.id, zone_id=r.zone_id) for r in rows]
    await record_events(conn, CHANGES, payloads)
    return len(rows)


async def collect_expired_dcr(conn: AsyncConnection, batch: int = DCR_GC_BATCH) -> int:
    """Archive up to `batch` DCR applications expired more than 24 hours ago (`application.expired`)."""
    return await _changed(conn, _COLLECT_DCR, batch, "application.expired")


async def expire_sessions(conn: AsyncConnection, batch: int = SESSION_EXPIRY_BATCH) -> int:
    """Mark up to `batch` active sessions past `expires_at` expired (`session.expired`)."""
    return await _changed(conn, _EXPIRE_SESSIONS, batch, "session.expired")
