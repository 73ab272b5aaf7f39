"""Sessions (the STS's table): the zone's list, and revoking them (explicit revocation of a session
or a subject, with descendants; grant DELETE), each revoked session with its
`caracal.sessions.revoke` entry."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any, Literal

import msgspec
from sqlalchemy import ColumnElement, Update, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from caracal.db.paging import Listing, Page, PagedQuery, listing
from caracal.db.query import Query
from caracal.db.tables.sessions import sessions
from caracal.domain.session_trees import announce_revoked, revoke_session_tree, revoke_subject_trees
from caracal.domain.wire import Body, Name, Resource, Timestamp
from caracal.domain.zones import require_live_zone
from caracal.errors import InvalidInput, NotFound
from caracal.events import Scalar
from caracal.timefmt import iso_ms

REVOKE_BATCH = 1000
ADMIN_REVOKED = "admin_revoked"
SessionStatus = Literal["active", "revoked", "expired"]


class Session(Resource):
    id: str
    zone_id: str
    session_type: Literal["user", "application"]
    subject_id: str | None
    parent_id: str | None
    status: SessionStatus
    expires_at: Timestamp
    authenticated_at: Timestamp
    created_at: Timestamp


class SessionPage(Resource):
    """CONTRACT.md §3.2: `next_cursor` is set exactly when the page is full."""

    rows: list[Session]
    next_cursor: str | None


class SessionFilters(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    status: SessionStatus | None = None
    subject_id: Name | None = None


class SubjectRevoke(Body):
    subject_id: Name


class SessionRevoked(Resource):
    """The session's status afterwards and how many sessions (it and its descendants) were revoked."""

    id: str
    status: SessionStatus
    revoked_sessions: int


class SubjectSessionsRevoked(Resource):
    subject_id: str
    revoked_sessions: int


_COLUMNS = (
    sessions.c.id,
    sessions.c.zone_id,
    sessions.c.session_type,
    sessions.c.subject_id,
    sessions.c.parent_id,
    sessions.c.status,
    sessions.c.expires_at,
    sessions.c.authenticated_at,
    sessions.c.created_at,
)
_IN_ZONE = sessions.c.zone_id == bindparam("zone_id")
_CONDITIONS: dict[str, ColumnElement[bool]] = {
    "status": sessions.c.status == bindparam("status"),
    "subject_id": sessions.c.subject_id == bindparam("subject_id"),
}
_GET = Query(select(*_COLUMNS).where(_IN_ZONE, sessions.c.id == bindparam("session_id")))


def session_wire(row: Any) -> Session:
    return Session(
        id=row.id,
        zone_id=row.zone_id,
        session_type=row.session_type,
        subject_id=row.subject_id,
        parent_id=row.parent_id,
        status=row.status,
        expires_at=iso_ms(row.expires_at),
        authenticated_at=iso_ms(row.authenticated_at),
        created_at=iso_ms(row.created_at),
    )


@cache
def _page_query(filters: frozenset[str]) -> PagedQuery:
    """One statement per set of filters given, built and compiled once (a filter left out is absent
    from the SQL, so the planner picks the page index that fits)."""
    conditions = [_CONDITIONS[name] for name in sorted(filters)]
    return PagedQuery(select(*_COLUMNS).where(_IN_ZONE, *conditions), sessions.c.created_at, sessions.c.id)


def session_filters(status: str | None, subject_id: str | None) -> SessionFilters:
    try:
        return msgspec.convert({"status": status, "subject_id": subject_id}, SessionFilters)
    except msgspec.ValidationError as exc:
        raise InvalidInput("invalid_query", str(exc)) from exc


async def list_sessions(
    conn: AsyncConnection, zone_id: str, page: Page, filters: SessionFilters
) -> SessionPage:
    values = {name: value for name, value in msgspec.structs.asdict(filters).items() if value is not None}
    rows = await _page_query(frozenset(values)).rows(conn, page, zone_id=zone_id, **values)
    found: Listing[Session] = listing(rows, page, session_wire)
    return SessionPage(rows=found.items, next_cursor=found.next_cursor)


# --- explicit revocation (DESIGN.md: "explicit revoke") ---------------------------------------------


async def revoke_session(
    conn: AsyncConnection, zone_id: str, session_id: str, *, request_id: str | None
) -> SessionRevoked:
    """Revoke one session (when active) and its active descendants; 404 session_not_found."""
    revoked = await revoke_session_tree(
        conn, zone_id, session_id, reason=ADMIN_REVOKED, request_id=request_id
    )
    row = await _GET.first(conn, {"zone_id": zone_id, "session_id": session_id})
    if row is None:
        raise NotFound("session_not_found", f"session {session_id} does not exist")
    return SessionRevoked(id=row.id, status=row.status, revoked_sessions=revoked)


async def revoke_subject(
    conn: AsyncConnection, zone_id: str, data: SubjectRevoke, *, request_id: str | None
) -> SubjectSessionsRevoked:
    """Revoke every active session of a subject in the zone, and their active descendants."""
    await require_live_zone(conn, zone_id)
    revoked = await revoke_subject_trees(
        conn, zone_id, data.subject_id, reason=ADMIN_REVOKED, request_id=request_id
    )
    return SubjectSessionsRevoked(subject_id=data.subject_id, revoked_sessions=revoked)


# --- grant DELETE: a subject's sessions in batches, skipping those the STS holds --------------------


def _revoke_batch(zone_id: str, matching: tuple[ColumnElement[bool], ...], size: int) -> Update:
    """The oldest `size` active matching sessions of the zone, locked (sessions another transaction
    holds, e.g. the STS, are skipped rather than waited for) and revoked."""
    chosen = (
        select(sessions.c.id)
        .where(sessions.c.zone_id == zone_id, sessions.c.status == "active", *matching)
        .order_by(sessions.c.created_at, sessions.c.id)
        .limit(size)
        .with_for_update(skip_locked=True)
        .cte("chosen")  # runs once: `id IN (subquery)` may be rescanned, each rescan taking more rows
    )
    return (
        update(sessions)
        .where(sessions.c.zone_id == zone_id, sessions.c.id == chosen.c.id)
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
        await announce_revoked(conn, zone_id, rows, reason=reason, extra=extra, request_id=request_id)
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
