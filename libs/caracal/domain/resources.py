"""Resources: request bodies, the response object (its Gateway binding joined) and the zone-scoped reads."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from sqlalchemy import and_, bindparam, select
from sqlalchemy.ext.asyncio import AsyncConnection

from caracal.db.paging import Listing, Page, PagedQuery, listing
from caracal.db.query import Query
from caracal.db.tables.resources import gateway_resource_bindings, resources
from caracal.domain.resource_rules import ResourceRules
from caracal.domain.wire import LenientBody, Name, Text, Timestamp
from caracal.domain.wire import Resource as ResponseBody
from caracal.errors import NotFound
from caracal.timefmt import iso_ms

# Any strings, at least one (CONTRACT.md §7.2: resource scopes have no format rule).
ResourceScopes = Annotated[list[Text], msgspec.Meta(min_length=1)]
UNSET = msgspec.UNSET


class ResourceCreate(LenientBody):
    scopes: ResourceScopes
    name: Name | msgspec.UnsetType = UNSET
    identifier: Name | msgspec.UnsetType = UNSET
    upstream_url: Text | msgspec.UnsetType | None = UNSET
    credential_provider_id: Text | msgspec.UnsetType | None = UNSET
    gateway_application_id: Name | msgspec.UnsetType | None = UNSET


class ResourceUpdate(LenientBody):
    name: Name | msgspec.UnsetType = UNSET
    identifier: Name | msgspec.UnsetType = UNSET
    upstream_url: Text | msgspec.UnsetType | None = UNSET
    scopes: ResourceScopes | msgspec.UnsetType = UNSET
    credential_provider_id: Text | msgspec.UnsetType | None = UNSET
    gateway_application_id: Name | msgspec.UnsetType | None = UNSET


class Resource(ResponseBody):
    id: str
    zone_id: str
    name: str
    identifier: str
    upstream_url: str | None
    scopes: list[str]
    credential_provider_id: str | None
    gateway_application_id: str | None
    created_at: Timestamp
    updated_at: Timestamp


ROW = (
    resources.c.id,
    resources.c.zone_id,
    resources.c.name,
    resources.c.identifier,
    resources.c.upstream_url,
    resources.c.scopes,
    resources.c.credential_provider_id,
    resources.c.created_at,
    resources.c.updated_at,
)
_BINDING = gateway_resource_bindings
_WITH_BINDING = resources.outerjoin(
    _BINDING,
    and_(_BINDING.c.zone_id == resources.c.zone_id, _BINDING.c.resource_identifier == resources.c.identifier),
)
_COLUMNS = (*ROW, _BINDING.c.application_id.label("gateway_application_id"))
IN_ZONE = (resources.c.zone_id == bindparam("zone_id"), resources.c.archived_at.is_(None))
ONE = (*IN_ZONE, resources.c.id == bindparam("resource_id"))
READ_ONE = select(*_COLUMNS).select_from(_WITH_BINDING).where(*ONE)
_GET = Query(READ_ONE)
_LIVE = select(
    resources.c.id,
    resources.c.name,
    resources.c.identifier,
    resources.c.scopes,
    resources.c.credential_provider_id,
).where(*ONE)
_LISTED = select(*_COLUMNS).select_from(_WITH_BINDING).where(*IN_ZONE)
_PAGE_ALL = PagedQuery(_LISTED, resources.c.created_at, resources.c.id)
_PAGE_VISIBLE = PagedQuery(
    _LISTED.where(resources.c.identifier != bindparam("control")), resources.c.created_at, resources.c.id
)


def resource_wire(row: Any, gateway_application_id: str | None) -> Resource:
    return Resource(
        id=row.id,
        zone_id=row.zone_id,
        name=row.name,
        identifier=row.identifier,
        upstream_url=row.upstream_url,
        scopes=list(row.scopes),
        credential_provider_id=row.credential_provider_id,
        gateway_application_id=gateway_application_id,
        created_at=iso_ms(row.created_at),
        updated_at=iso_ms(row.updated_at),
    )


def _read_wire(row: Any) -> Resource:
    return resource_wire(row, row.gateway_application_id)


def resource_not_found(resource_id: str) -> NotFound:
    return NotFound("resource_not_found", f"resource {resource_id} does not exist in this zone")


async def require_live_resource(conn: AsyncConnection, zone_id: str, resource_id: str) -> Any:
    """The resource row (id, name, identifier, scopes, credential_provider_id) for the aggregates that
    name a resource (grants, provider grants): 404 resource_not_found when missing or archived."""
    row = (await conn.execute(_LIVE, {"zone_id": zone_id, "resource_id": resource_id})).first()
    if row is None:
        raise resource_not_found(resource_id)
    return row


async def list_resources(
    conn: AsyncConnection, zone_id: str, page: Page, rules: ResourceRules
) -> Listing[Resource]:
    """The zone's live resources, newest first; the control resource only with the manage header."""
    if rules.manage_control:
        rows = await _PAGE_ALL.rows(conn, page, zone_id=zone_id)
    else:
        rows = await _PAGE_VISIBLE.rows(conn, page, zone_id=zone_id, control=rules.control_audience)
    return listing(rows, page, _read_wire)


async def get_resource(
    conn: AsyncConnection, zone_id: str, resource_id: str, rules: ResourceRules
) -> Resource:
    row = await _GET.first(conn, {"zone_id": zone_id, "resource_id": resource_id})
    if row is None or (rules.is_control(row.identifier) and not rules.manage_control):
        raise resource_not_found(resource_id)
    return _read_wire(row)
