"""Teams: named member lists (`[{id, role}]`) of a zone, hard-deleted; names unique per zone."""

from __future__ import annotations

from typing import Any

import msgspec
from sqlalchemy import Text as SqlText
from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from caracal.db.paging import Listing, Page, PagedQuery, listing
from caracal.db.query import Query
from caracal.db.tables.teams import teams
from caracal.db.tables.zones import zones
from caracal.domain.changes import entity_changed
from caracal.domain.context import Caller
from caracal.domain.wire import LenientBody, Name, Resource, Text, Timestamp
from caracal.errors import InvalidInput, NotFound
from caracal.ids import new_id
from caracal.timefmt import iso_ms

UNSET = msgspec.UNSET


class TeamMemberBody(LenientBody):
    """A member as sent: keys other than id and role are dropped (CONTRACT.md §4.11)."""

    id: Text
    role: Text


class TeamCreate(LenientBody):
    name: Name
    members: list[TeamMemberBody] = msgspec.field(default_factory=list)


class TeamUpdate(LenientBody):
    name: Name | msgspec.UnsetType = UNSET
    members: list[TeamMemberBody] | msgspec.UnsetType = UNSET


class TeamMember(Resource):
    id: str
    role: str


class Team(Resource):
    id: str
    zone_id: str
    name: str
    members_json: list[TeamMember]
    created_at: Timestamp
    updated_at: Timestamp


_COLUMNS = (
    teams.c.id,
    teams.c.zone_id,
    teams.c.name,
    teams.c.members_json,
    teams.c.created_at,
    teams.c.updated_at,
)
_IN_ZONE = teams.c.zone_id == bindparam("zone")
_ONE = (_IN_ZONE, teams.c.id == bindparam("team_id"))
_GET = Query(select(*_COLUMNS).where(*_ONE))
_PAGE = PagedQuery(select(*_COLUMNS).where(_IN_ZONE), teams.c.created_at, teams.c.id)
# The original inserts without looking at the zone (a missing one was a 500): ours inserts from the
# live zone row in the same statement, so a missing or archived zone is 404 at no extra round trip.
_INSERT = (
    insert(teams)
    .from_select(
        ["id", "zone_id", "name", "members_json"],
        select(
            bindparam("team_id", type_=SqlText),
            zones.c.id,
            bindparam("team_name", type_=SqlText),
            bindparam("members", type_=teams.c.members_json.type),
        ).where(zones.c.id == bindparam("zone"), zones.c.archived_at.is_(None)),
    )
    .returning(*_COLUMNS)
)
_DELETE = delete(teams).where(*_ONE).returning(teams.c.id)


def _members(members: list[TeamMemberBody]) -> list[dict[str, str]]:
    return [{"id": member.id, "role": member.role} for member in members]


def team_wire(row: Any) -> Team:
    return Team(
        id=row.id,
        zone_id=row.zone_id,
        name=row.name,
        members_json=msgspec.convert(row.members_json, list[TeamMember]),
        created_at=iso_ms(row.created_at),
        updated_at=iso_ms(row.updated_at),
    )


def team_not_found(team_id: str) -> NotFound:
    return NotFound("team_not_found", f"team {team_id} does not exist")


async def list_teams(conn: AsyncConnection, zone_id: str, page: Page) -> Listing[Team]:
    return listing(await _PAGE.rows(conn, page, zone=zone_id), page, team_wire)


async def get_team(conn: AsyncConnection, zone_id: str, team_id: str) -> Team:
    row = await _GET.first(conn, {"zone": zone_id, "team_id": team_id})
    if row is None:
        raise team_not_found(team_id)
    return team_wire(row)


async def create_team(conn: AsyncConnection, zone_id: str, data: TeamCreate, caller: Caller) -> Team:
    """A taken name fails the insert: 409 team_conflict (teams_zone_id_name_key, in the registry)."""
    values = {
        "team_id": new_id(),
        "zone": zone_id,
        "team_name": data.name,
        "members": _members(data.members),
    }
    row = (await conn.execute(_INSERT, values)).first()
    if row is None:
        raise NotFound("zone_not_found", f"zone {zone_id} does not exist")
    await entity_changed(conn, "team.created", zone_id, row.id, caller)
    return team_wire(row)


async def update_team(
    conn: AsyncConnection, zone_id: str, team_id: str, data: TeamUpdate, caller: Caller
) -> Team:
    """Given fields only; `members` replaces the list; a taken name is 409 team_conflict."""
    changes: dict[str, Any] = {}
    if isinstance(data.name, str):
        changes["name"] = data.name
    if isinstance(data.members, list):
        changes["members_json"] = _members(data.members)
    if not changes:
        raise InvalidInput("no_fields", "nothing to update")
    statement = update(teams).where(*_ONE).values(**changes, updated_at=func.now()).returning(*_COLUMNS)
    row = (await conn.execute(statement, {"zone": zone_id, "team_id": team_id})).first()
    if row is None:
        raise team_not_found(team_id)
    await entity_changed(conn, "team.updated", zone_id, team_id, caller)
    return team_wire(row)


async def delete_team(conn: AsyncConnection, zone_id: str, team_id: str, caller: Caller) -> None:
    if (await conn.execute(_DELETE, {"zone": zone_id, "team_id": team_id})).first() is None:
        raise team_not_found(team_id)
    await entity_changed(conn, "team.deleted", zone_id, team_id, caller)
