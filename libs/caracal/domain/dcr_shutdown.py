"""DCR shutdown (CONTRACT.md §4.1 steps 4-6): disabling registration in a zone, and with revoke_live
the revocation of its live DCR identities (applications, their sessions, agents and delegations) in
the zone update's transaction, with the stream entries of §5.3 and the audit row's real counts."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ARRAY, Text, any_, bindparam, func, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from caracal.db.engine import sqlstate_of
from caracal.db.tables.applications import applications
from caracal.domain.agents import terminate_application_agents
from caracal.domain.audit import record_audit
from caracal.domain.context import Caller
from caracal.domain.session_trees import revoke_application_trees
from caracal.errors import Conflict, Unavailable
from caracal.events import CHANGES
from caracal.outbox import change_payload, record_events

REASON = "dcr_shutdown"
# insufficient privilege, undefined table, undefined column: the schema the shutdown needs is not
# (yet) there, e.g. a coordinator's tables missing or not granted; the original answers 503
UNAVAILABLE_SQLSTATES = frozenset({"42501", "42P01", "42703"})

_LIVE_DCR = (
    applications.c.zone_id == bindparam("zone"),
    applications.c.registration_method == "dcr",
    applications.c.archived_at.is_(None),
    applications.c.expires_at > func.now(),
)
_LIVE_DCR_COUNT = select(func.count()).select_from(applications).where(*_LIVE_DCR)
_LOCK_LIVE_DCR = select(applications.c.id).where(*_LIVE_DCR).order_by(applications.c.id).with_for_update()
_ARCHIVE = (
    update(applications)
    .where(
        applications.c.zone_id == bindparam("zone"),
        applications.c.id == any_(bindparam("ids", type_=ARRAY(Text))),
        applications.c.archived_at.is_(None),
    )
    .values(archived_at=func.now())
    .returning(applications.c.id)
)


@dataclass(frozen=True, slots=True)
class Revoked:
    applications: int = 0
    sessions: int = 0
    agents: int = 0
    delegations: int = 0


async def live_dcr_applications(conn: AsyncConnection, zone_id: str) -> int:
    """DCR applications of the zone that are neither archived nor expired (the live-DCR index)."""
    return int((await conn.execute(_LIVE_DCR_COUNT, {"zone": zone_id})).scalar_one())


async def shut_down_dcr(conn: AsyncConnection, zone_id: str, mode: str | None, caller: Caller) -> None:
    """Disable registration in the zone (locked by the caller); live DCR applications need an
    explicit keep_live or revoke_live (409 dcr_shutdown_required with their count)."""
    try:
        await _shut_down(conn, zone_id, mode, caller)
    except DBAPIError as exc:
        if sqlstate_of(exc) not in UNAVAILABLE_SQLSTATES:
            raise
        message = "the tables DCR shutdown revokes are missing or not accessible"
        raise Unavailable("dcr_shutdown_unavailable", message, message=message) from exc


async def _shut_down(conn: AsyncConnection, zone_id: str, mode: str | None, caller: Caller) -> None:
    live = list((await conn.execute(_LOCK_LIVE_DCR, {"zone": zone_id})).scalars())
    if live and mode is None:
        raise Conflict(
            "dcr_shutdown_required", "the zone has live DCR applications", live_dcr_applications=len(live)
        )
    effective = "no_live" if not live else mode or "keep_live"
    revoked = await revoke_live(conn, zone_id, live, caller) if live and mode == "revoke_live" else Revoked()
    await record_audit(
        conn,
        caller,
        action=f"DCR shutdown {effective}",
        zone_id=zone_id,
        entity_type="zones",
        entity_id=zone_id,
        payload={
            "dcr_registration_disabled": True,
            "dcr_shutdown_mode": effective,
            "live_dcr_applications": len(live),
            "revoked_applications": revoked.applications,
            "revoked_sessions": revoked.sessions,
            "terminated_agents": revoked.agents,
            "revoked_delegations": revoked.delegations,
        },
    )


async def revoke_live(
    conn: AsyncConnection, zone_id: str, application_ids: list[str], caller: Caller
) -> Revoked:
    """Archive the (locked) live DCR applications, revoke their application sessions with all
    descendants, terminate their agents with descendants, revoke the edges touching those agents.
    Entries per stream in the contract's order: every session's, then per agent, then per edge."""
    archived = list((await conn.execute(_ARCHIVE, {"zone": zone_id, "ids": application_ids})).scalars())
    changes = [
        change_payload("application.deleted", entity_type="application", entity_id=app_id, zone_id=zone_id)
        for app_id in archived
    ]
    await record_events(conn, CHANGES, changes, request_id=caller.request_id)
    sessions = await revoke_application_trees(
        conn, zone_id, archived, reason=REASON, request_id=caller.request_id
    )
    agents = await terminate_application_agents(
        conn, zone_id, archived, reason=REASON, request_id=caller.request_id
    )
    return Revoked(len(archived), sessions, agents.terminated_agents, agents.revoked_delegations)
