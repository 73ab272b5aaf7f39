"""Resources: identifiers, the control resource, the Gateway's bindings, quota, soft delete, events."""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncConnection

from caracal.db.tables.resources import resources
from caracal.errors import NotFound

_ONE = (
    resources.c.zone_id == bindparam("zone_id"),
    resources.c.id == bindparam("resource_id"),
    resources.c.archived_at.is_(None),
)
_LIVE = select(
    resources.c.id,
    resources.c.name,
    resources.c.identifier,
    resources.c.scopes,
    resources.c.credential_provider_id,
).where(*_ONE)


def resource_not_found(resource_id: str) -> NotFound:
    return NotFound("resource_not_found", f"resource {resource_id} does not exist in this zone")


async def require_live_resource(conn: AsyncConnection, zone_id: str, resource_id: str) -> Any:
    """The resource row (id, name, identifier, scopes, credential_provider_id) for the aggregates that
    name a resource (grants, provider grants): 404 resource_not_found when missing or archived."""
    row = (await conn.execute(_LIVE, {"zone_id": zone_id, "resource_id": resource_id})).first()
    if row is None:
        raise resource_not_found(resource_id)
    return row
