"""Revoking sessions with their descendants by parent_id, each revoked one with its
`caracal.sessions.revoke` entry (explicit revocation, DCR shutdown); imports no other aggregate."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import ARRAY, ColumnElement, Select, Text, Update, any_, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from caracal.db.tables.sessions import sessions
from caracal.events import SESSIONS_REVOKE, Scalar
from caracal.outbox import record_events

EVENTS_PER_STATEMENT = 1000
_IN_ZONE = sessions.c.zone_id == bindparam("in_zone")
_ACTIVE = sessions.c.status == "active"


def _revoke_trees(roots: ColumnElement[bool]) -> Update:
    """The zone's sessions matching `roots` and all their descendants by parent_id (walked through
    any status, so an active child of a revoked parent is found; UNION ends a cycle), the active
    ones revoked. Rows the STS holds are waited for: every one of them must end revoked."""
    top: Select[Any] = select(sessions.c.id).where(_IN_ZONE, roots)
    tree = top.cte("tree", recursive=True)
    child = sessions.alias("child")
    tree = tree.union(
        select(child.c.id)
        .join(tree, child.c.parent_id == tree.c.id)
        .where(child.c.zone_id == bindparam("in_zone"))
    )
    return (
        update(sessions)
        .where(_IN_ZONE, _ACTIVE, sessions.c.id.in_(select(tree.c.id)))
        .values(status="revoked")
        .returning(sessions.c.id, sessions.c.created_at)
    )


_ONE_TREE = _revoke_trees(sessions.c.id == bindparam("session_id"))
_SUBJECT_TREES = _revoke_trees(_ACTIVE & (sessions.c.subject_id == bindparam("of_subject")))
_APPLICATION_TREES = _revoke_trees(
    _ACTIVE
    & (sessions.c.session_type == "application")
    & (sessions.c.subject_id == any_(bindparam("application_ids", type_=ARRAY(Text))))
)


async def announce_revoked(
    conn: AsyncConnection,
    zone_id: str,
    rows: Sequence[Any],
    *,
    reason: str,
    extra: Mapping[str, Scalar] | None = None,
    request_id: str | None = None,
) -> None:
    """One `caracal.sessions.revoke` entry `{zone_id, session_id, reason, **extra}` per revoked
    session (rows with `id`, `created_at`), oldest first, so parents come before their children."""
    ordered = sorted(rows, key=lambda row: (row.created_at, row.id))  # RETURNING has no order of its own
    payloads = [
        {"zone_id": zone_id, "session_id": row.id, "reason": reason, **(extra or {})} for row in ordered
    ]
    await record_in_chunks(conn, SESSIONS_REVOKE, payloads, request_id)


async def record_in_chunks(
    conn: AsyncConnection, stream: str, payloads: Sequence[Mapping[str, Scalar]], request_id: str | None
) -> None:
    """`record_events` in order, at most EVENTS_PER_STATEMENT per statement (bounded parameters
    whatever a revocation reaches; the stream's order is the order given)."""
    for start in range(0, len(payloads), EVENTS_PER_STATEMENT):
        chunk = payloads[start : start + EVENTS_PER_STATEMENT]
        await record_events(conn, stream, chunk, request_id=request_id)


async def _revoke(
    conn: AsyncConnection, statement: Update, params: dict[str, Any], reason: str, request_id: str | None
) -> int:
    rows = list((await conn.execute(statement, params)).all())
    await announce_revoked(conn, params["in_zone"], rows, reason=reason, request_id=request_id)
    return len(rows)


async def revoke_session_tree(
    conn: AsyncConnection, zone_id: str, session_id: str, *, reason: str, request_id: str | None
) -> int:
    """The session (when active) and its active descendants; how many were revoked."""
    params = {"in_zone": zone_id, "session_id": session_id}
    return await _revoke(conn, _ONE_TREE, params, reason, request_id)


async def revoke_subject_trees(
    conn: AsyncConnection, zone_id: str, subject_id: str, *, reason: str, request_id: str | None
) -> int:
    """Every active session of the subject in the zone and their active descendants."""
    params = {"in_zone": zone_id, "of_subject": subject_id}
    return await _revoke(conn, _SUBJECT_TREES, params, reason, request_id)


async def revoke_application_trees(
    conn: AsyncConnection,
    zone_id: str,
    application_ids: Sequence[str],
    *,
    reason: str,
    request_id: str | None,
) -> int:
    """The active application sessions of these applications (CONTRACT.md §4.1 revoke_live) and
    their active descendants."""
    params = {"in_zone": zone_id, "application_ids": list(application_ids)}
    return await _revoke(conn, _APPLICATION_TREES, params, reason, request_id)
