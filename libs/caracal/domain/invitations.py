"""Invitations to a zone (email, role, who invited, until when): listed, created, withdrawn if unaccepted."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

import msgspec
from sqlalchemy import Interval, Text, bindparam, delete, func, insert, literal, select
from sqlalchemy.ext.asyncio import AsyncConnection

from caracal.db.paging import Listing, Page, PagedQuery, listing
from caracal.db.tables import TS
from caracal.db.tables.invitations import invitations
from caracal.db.tables.zones import zones
from caracal.domain.changes import entity_changed
from caracal.domain.context import Caller
from caracal.domain.wire import LenientBody, Name, Resource, Timestamp, UtcTimestamp, utc_datetime
from caracal.errors import NotFound
from caracal.ids import new_id
from caracal.timefmt import iso_ms

DEFAULT_VALIDITY = timedelta(days=7)
# The shape of the original's email check (dot-separated local part, a domain of labels ending in a
# 2+ letter top-level label), written without look-arounds so /openapi.json's pattern is portable.
# 320 characters: the longest address the mail standards allow (64 local + @ + 255 domain).
Email = Annotated[
    str,
    msgspec.Meta(
        max_length=320,
        pattern=r"^[A-Za-z0-9_'+-]+(\.[A-Za-z0-9_'+-]+)*@([A-Za-z0-9][A-Za-z0-9-]*\.)+[A-Za-z]{2,}$",
    ),
]


class InvitationCreate(LenientBody):
    email: Email
    role: Name
    invited_by: Name
    expires_at: UtcTimestamp | msgspec.UnsetType = msgspec.UNSET

    def __post_init__(self) -> None:
        if isinstance(self.expires_at, str):
            utc_datetime(self.expires_at)  # an impossible date (02-30) is a bad body, not a 500


class Invitation(Resource):
    id: str
    zone_id: str
    email: str
    role: str
    invited_by: str
    accepted_at: Timestamp | None
    expires_at: Timestamp
    created_at: Timestamp


_COLUMNS = (
    invitations.c.id,
    invitations.c.zone_id,
    invitations.c.email,
    invitations.c.role,
    invitations.c.invited_by,
    invitations.c.accepted_at,
    invitations.c.expires_at,
    invitations.c.created_at,
)
_IN_ZONE = invitations.c.zone_id == bindparam("zone_id")
_PAGE = PagedQuery(select(*_COLUMNS).where(_IN_ZONE), invitations.c.created_at, invitations.c.id)
# inserted from the live zone row: a missing or archived zone is 404 in the same statement
_INSERT = (
    insert(invitations)
    .from_select(
        ["id", "zone_id", "email", "role", "invited_by", "expires_at"],
        select(
            bindparam("invitation_id", type_=Text),
            zones.c.id,
            *(bindparam(name, type_=Text) for name in ("email", "role", "invited_by")),
            # by the database clock, as created_at is: a default invitation lasts exactly seven days
            func.coalesce(
                bindparam("expires_at", type_=TS), func.now() + literal(DEFAULT_VALIDITY, Interval)
            ),
        ).where(zones.c.id == bindparam("zone_id"), zones.c.archived_at.is_(None)),
    )
    .returning(*_COLUMNS)
)
# an accepted invitation stays: withdrawing it is 404, as in the original
_DELETE = (
    delete(invitations)
    .where(_IN_ZONE, invitations.c.id == bindparam("invitation_id"), invitations.c.accepted_at.is_(None))
    .returning(invitations.c.id)
)


def invitation_wire(row: Any) -> Invitation:
    return Invitation(
        id=row.id,
        zone_id=row.zone_id,
        email=row.email,
        role=row.role,
        invited_by=row.invited_by,
        accepted_at=iso_ms(row.accepted_at),
        expires_at=iso_ms(row.expires_at),
        created_at=iso_ms(row.created_at),
    )


async def list_invitations(conn: AsyncConnection, zone_id: str, page: Page) -> Listing[Invitation]:
    """All of them, accepted and expired ones included."""
    return listing(await _PAGE.rows(conn, page, zone_id=zone_id), page, invitation_wire)


async def get_invitation(conn: AsyncConnection, zone_id: str, invitation_id: str) -> Invitation:
    """One invitation as the list shows it (there is no GET one: a conditional withdrawal compares it)."""
    statement = select(*_COLUMNS).where(_IN_ZONE, invitations.c.id == bindparam("invitation_id"))
    row = (await conn.execute(statement, {"zone_id": zone_id, "invitation_id": invitation_id})).first()
    if row is None:
        raise NotFound("invitation_not_found", f"invitation {invitation_id} does not exist or was accepted")
    return invitation_wire(row)


async def create_invitation(
    conn: AsyncConnection, zone_id: str, data: InvitationCreate, caller: Caller
) -> Invitation:
    values = {
        "invitation_id": new_id(),
        "zone_id": zone_id,
        "email": data.email,
        "role": data.role,
        "invited_by": data.invited_by,
        "expires_at": utc_datetime(data.expires_at) if isinstance(data.expires_at, str) else None,
    }
    row = (await conn.execute(_INSERT, values)).first()
    if row is None:
        raise NotFound("zone_not_found", f"zone {zone_id} does not exist")
    await entity_changed(conn, "invitation.created", zone_id, row.id, caller)
    return invitation_wire(row)


async def delete_invitation(conn: AsyncConnection, zone_id: str, invitation_id: str, caller: Caller) -> None:
    if (await conn.execute(_DELETE, {"zone_id": zone_id, "invitation_id": invitation_id})).first() is None:
        raise NotFound("invitation_not_found", f"invitation {invitation_id} does not exist or was accepted")
    await entity_changed(conn, "invitation.deleted", zone_id, invitation_id, caller)
