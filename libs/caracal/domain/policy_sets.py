"""Policy sets: the set itself (its binding's active version joined), creation with its binding, archive."""

from __future__ import annotations

from typing import Any

import msgspec
from sqlalchemy import and_, bindparam, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from caracal.db.paging import Listing, Page, PagedQuery, listing
from caracal.db.query import Query
from caracal.db.tables.policies import policy_set_bindings, policy_sets
from caracal.domain.changes import entity_changed
from caracal.domain.context import Caller
from caracal.domain.policy_set_activation import clear_binding_of_deleted_set, lock_zone_policy
from caracal.domain.wire import LenientBody, Name, Resource, Text, Timestamp
from caracal.errors import NotFound
from caracal.ids import new_id
from caracal.timefmt import iso_ms


class PolicySetCreate(LenientBody):
    name: Name
    description: Text | msgspec.UnsetType = msgspec.UNSET


class PolicySet(Resource):
    id: str
    zone_id: str
    name: str
    description: str | None
    created_at: Timestamp
    active_version_id: str | None


_BINDING = policy_set_bindings
_WITH_BINDING = policy_sets.outerjoin(
    _BINDING, and_(_BINDING.c.zone_id == policy_sets.c.zone_id, _BINDING.c.policy_set_id == policy_sets.c.id)
)
_COLUMNS = (
    policy_sets.c.id,
    policy_sets.c.zone_id,
    policy_sets.c.name,
    policy_sets.c.description,
    policy_sets.c.created_at,
    _BINDING.c.active_version_id,
)
IN_ZONE = (policy_sets.c.zone_id == bindparam("zone_id"), policy_sets.c.archived_at.is_(None))
ONE = (*IN_ZONE, policy_sets.c.id == bindparam("policy_set_id"))
_GET = Query(select(*_COLUMNS).select_from(_WITH_BINDING).where(*ONE))
_PAGE = PagedQuery(
    select(*_COLUMNS).select_from(_WITH_BINDING).where(*IN_ZONE), policy_sets.c.created_at, policy_sets.c.id
)
# The set and its binding (null versions) in one statement, only in a live zone: no row, no zone.
_CREATE = text(
    """
    WITH zone AS (SELECT id FROM zones WHERE id = :zone_id AND archived_at IS NULL),
         created AS (
             INSERT INTO policy_sets (id, zone_id, name, description, created_by)
             SELECT :id, zone.id, :name, :description, :created_by FROM zone
             RETURNING id, zone_id, name, description, created_at),
         bound AS (
             INSERT INTO policy_set_bindings (zone_id, policy_set_id) SELECT zone_id, id FROM created)
    SELECT id, zone_id, name, description, created_at, NULL::text AS active_version_id FROM created
    """
)
_ARCHIVE = text(
    """
    UPDATE policy_sets SET archived_at = now(), updated_at = now()
     WHERE zone_id = :zone_id AND id = :policy_set_id AND archived_at IS NULL
    RETURNING id
    """
)


def policy_set_wire(row: Any) -> PolicySet:
    return PolicySet(
        id=row.id,
        zone_id=row.zone_id,
        name=row.name,
        description=row.description,
        created_at=iso_ms(row.created_at),
        active_version_id=row.active_version_id,
    )


def policy_set_not_found(policy_set_id: str) -> NotFound:
    return NotFound("policy_set_not_found", f"policy set {policy_set_id} does not exist in this zone")


async def list_policy_sets(conn: AsyncConnection, zone_id: str, page: Page) -> Listing[PolicySet]:
    return listing(await _PAGE.rows(conn, page, zone_id=zone_id), page, policy_set_wire)


async def get_policy_set(conn: AsyncConnection, zone_id: str, policy_set_id: str) -> PolicySet:
    row = await _GET.first(conn, {"zone_id": zone_id, "policy_set_id": policy_set_id})
    if row is None:
        raise policy_set_not_found(policy_set_id)
    return policy_set_wire(row)


async def create_policy_set(
    conn: AsyncConnection, zone_id: str, data: PolicySetCreate, caller: Caller
) -> PolicySet:
    description = data.description if isinstance(data.description, str) else None
    values = {
        "id": new_id(),
        "zone_id": zone_id,
        "name": data.name,
        "description": description,
        "created_by": caller.actor_name,
    }
    row = (await conn.execute(_CREATE, values)).first()
    if row is None:
        raise NotFound("zone_not_found", f"zone {zone_id} does not exist")
    await entity_changed(conn, "policy_set.created", zone_id, row.id, caller)
    return policy_set_wire(row)


async def delete_policy_set(conn: AsyncConnection, zone_id: str, policy_set_id: str, caller: Caller) -> None:
    """Archives the set; an active set's binding is cleared too, and the STS told (DESIGN.md, A1)."""
    await lock_zone_policy(conn, zone_id)  # an activation of this set in flight finishes first
    archived = await conn.execute(_ARCHIVE, {"zone_id": zone_id, "policy_set_id": policy_set_id})
    if archived.first() is None:
        raise policy_set_not_found(policy_set_id)
    await clear_binding_of_deleted_set(conn, zone_id, policy_set_id, caller)
    await entity_changed(conn, "policy_set.deleted", zone_id, policy_set_id, caller)
