"""Delegated grants (an application acting for a user on a resource): the scope-subset rule, lists
with their joined names, and revocation, which revokes the user's sessions in the zone."""

from __future__ import annotations

from functools import cache
from typing import Annotated, Any, Literal

import msgspec
from sqlalchemy import (
    ARRAY,
    ColumnElement,
    Text,
    bindparam,
    case,
    exists,
    func,
    insert,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from caracal.db.paging import Listing, Page, PagedQuery, listing
from caracal.db.query import Query
from caracal.db.tables.applications import applications
from caracal.db.tables.grants import delegated_grants as grants
from caracal.db.tables.providers import providers
from caracal.db.tables.resources import resources
from caracal.db.tables.zones import zones
from caracal.domain.changes import entity_changed
from caracal.domain.context import Caller
from caracal.domain.sessions import revoke_subject_sessions
from caracal.domain.wire import LenientBody, Name, Resource, Scopes, Timestamp
from caracal.errors import Forbidden, InvalidInput, NotFound
from caracal.ids import new_id
from caracal.timefmt import iso_ms

GrantStatus = Literal["active", "revoked", "expired"]
# The contract sets no limit; the (zone_id, user_id) index cannot hold an entry over ~2700 bytes.
UserId = Annotated[str, msgspec.Meta(min_length=1, max_length=512, pattern=r"^[^\x00]*$")]


class GrantCreate(LenientBody):
    application_id: Name
    user_id: UserId
    resource_id: Name
    scopes: Scopes


class Grant(Resource):
    id: str
    zone_id: str
    application_id: str
    user_id: str
    resource_id: str
    scopes: list[str]
    status: GrantStatus
    created_at: Timestamp


class GrantListRow(Grant):
    provider_id: str | None
    application_name: str | None
    resource_name: str | None
    provider_name: str | None
    provider_kind: str | None


class GrantFilters(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The list's filters (CONTRACT.md §4.7); `subject_id` is folded into `user_id` by `grant_filters`."""

    application_id: Name | None = None
    user_id: Name | None = None
    resource_id: Name | None = None
    provider_id: Name | None = None
    status: GrantStatus | None = None
    scopes: Scopes | None = None


_COLUMNS = (
    grants.c.id,
    grants.c.zone_id,
    grants.c.application_id,
    grants.c.user_id,
    grants.c.resource_id,
    grants.c.scopes,
    grants.c.status,
    grants.c.created_at,
)
_SCOPES = bindparam("scopes", type_=ARRAY(Text))
_GET = Query(
    select(*_COLUMNS).where(grants.c.zone_id == bindparam("zone_id"), grants.c.id == bindparam("grant_id"))
)


def grant_wire(row: Any) -> Grant:
    return Grant(
        id=row.id,
        zone_id=row.zone_id,
        application_id=row.application_id,
        user_id=row.user_id,
        resource_id=row.resource_id,
        scopes=list(row.scopes),
        status=row.status,
        created_at=iso_ms(row.created_at),
    )


def grant_row_wire(row: Any) -> GrantListRow:
    return GrantListRow(
        id=row.id,
        zone_id=row.zone_id,
        application_id=row.application_id,
        user_id=row.user_id,
        resource_id=row.resource_id,
        scopes=list(row.scopes),
        status=row.status,
        created_at=iso_ms(row.created_at),
        provider_id=row.provider_id,
        application_name=row.application_name,
        resource_name=row.resource_name,
        provider_name=row.provider_name,
        provider_kind=row.provider_kind,
    )


async def get_grant(conn: AsyncConnection, zone_id: str, grant_id: str) -> Grant:
    row = await _GET.first(conn, {"zone_id": zone_id, "grant_id": grant_id})
    if row is None:
        raise NotFound("grant_not_found", f"grant {grant_id} does not exist")
    return grant_wire(row)


# --- list -------------------------------------------------------------------------------------------

_CONDITIONS: dict[str, ColumnElement[bool]] = {
    "application_id": grants.c.application_id == bindparam("application_id"),
    "user_id": grants.c.user_id == bindparam("user_id"),
    "resource_id": grants.c.resource_id == bindparam("resource_id"),
    "provider_id": resources.c.credential_provider_id == bindparam("provider_id"),
    "status": grants.c.status == bindparam("status"),
    "scopes": grants.c.scopes.contains(_SCOPES),
}
_LISTED = (
    select(
        *_COLUMNS,
        resources.c.credential_provider_id.label("provider_id"),
        applications.c.name.label("application_name"),
        resources.c.name.label("resource_name"),
        providers.c.name.label("provider_name"),
        providers.c.provider_kind,
    )
    .select_from(
        grants.outerjoin(
            applications,
            (applications.c.zone_id == grants.c.zone_id) & (applications.c.id == grants.c.application_id),
        )
        .outerjoin(
            resources, (resources.c.zone_id == grants.c.zone_id) & (resources.c.id == grants.c.resource_id)
        )
        .outerjoin(
            providers,
            (providers.c.zone_id == resources.c.zone_id)
            & (providers.c.id == resources.c.credential_provider_id),
        )
    )
    .where(grants.c.zone_id == bindparam("zone_id"))
)


@cache
def _page_query(filters: frozenset[str]) -> PagedQuery:
    """One statement per set of filters given (at most 64), each built and compiled once: a filter
    left out is absent from the SQL, so the planner can use that filter's index."""
    conditions = [_CONDITIONS[name] for name in sorted(filters)]
    return PagedQuery(_LISTED.where(*conditions), grants.c.created_at, grants.c.id)


def grant_filters(query: dict[str, str | None]) -> GrantFilters:
    """The filters of a list request; `user_id` wins over its alias `subject_id`, `scopes` is
    comma-separated. Any invalid value is 400 invalid_query."""
    given: dict[str, Any] = {name: value for name, value in query.items() if value is not None}
    subject = given.pop("subject_id", None)
    if subject is not None:
        given.setdefault("user_id", subject)
    if "scopes" in given:
        given["scopes"] = given["scopes"].split(",")
    try:
        if subject is not None:
            msgspec.convert(subject, Name)
        return msgspec.convert(given, GrantFilters)
    except msgspec.ValidationError as exc:
        raise InvalidInput("invalid_query", str(exc)) from exc


async def list_grants(
    conn: AsyncConnection, zone_id: str, page: Page, filters: GrantFilters
) -> Listing[GrantListRow]:
    values = {name: value for name, value in msgspec.structs.asdict(filters).items() if value is not None}
    query = _page_query(frozenset(values))
    return listing(await query.rows(conn, page, zone_id=zone_id, **values), page, grant_row_wire)


# --- create -----------------------------------------------------------------------------------------

_APPLICATION_LIVE = exists().where(
    applications.c.zone_id == zones.c.id,
    applications.c.id == bindparam("application_id"),
    applications.c.archived_at.is_(None),
    or_(applications.c.expires_at.is_(None), applications.c.expires_at > func.now()),
)
_RESOURCE_SCOPES = (
    select(resources.c.scopes)
    .where(
        resources.c.zone_id == zones.c.id,
        resources.c.id == bindparam("resource_id"),
        resources.c.archived_at.is_(None),
    )
    .scalar_subquery()
)
_CHECKS = (
    select(
        zones.c.id.label("zone_id"),
        _APPLICATION_LIVE.label("application_live"),
        _RESOURCE_SCOPES.label("resource_scopes"),
    )
    .where(zones.c.id == bindparam("zone_id"), zones.c.archived_at.is_(None))
    .cte("checks")
)
_INSERTED = (
    insert(grants)
    .from_select(
        ["id", "zone_id", "application_id", "user_id", "resource_id", "scopes"],
        select(
            bindparam("grant_id"),
            _CHECKS.c.zone_id,
            bindparam("application_id"),
            bindparam("user_id"),
            bindparam("resource_id"),
            _SCOPES,
        ).where(_CHECKS.c.application_live, _CHECKS.c.resource_scopes.contains(_SCOPES)),
    )
    .returning(*_COLUMNS)
    .cte("inserted")
)
# The zone, the application, the resource and the scope rule checked and the grant inserted in one
# statement (one round trip instead of four); the check columns say which rule refused.
_CREATE = select(
    _CHECKS.c.application_live, _CHECKS.c.resource_scopes, *(_INSERTED.c[c.name] for c in _COLUMNS)
).select_from(_CHECKS.outerjoin(_INSERTED, true()))


async def create_grant(conn: AsyncConnection, zone_id: str, data: GrantCreate, caller: Caller) -> Grant:
    params = {
        "zone_id": zone_id,
        "grant_id": new_id(),
        "application_id": data.application_id,
        "user_id": data.user_id,
        "resource_id": data.resource_id,
        "scopes": data.scopes,
    }
    row = (await conn.execute(_CREATE, params)).first()
    if row is None:
        raise NotFound("zone_not_found", f"zone {zone_id} does not exist")
    if not row.application_live:
        raise NotFound("application_not_found", f"application {data.application_id} does not exist")
    if row.resource_scopes is None:
        raise NotFound("resource_not_found", f"resource {data.resource_id} does not exist")
    if row.id is None:
        raise Forbidden("grant_scopes_exceed_resource", "the grant's scopes must be among the resource's")
    await entity_changed(conn, "grant.created", zone_id, row.id, caller)
    return grant_wire(row)


# --- revoke -----------------------------------------------------------------------------------------

# updated_at says when the grant was revoked: a repeated DELETE leaves it (the contract never moves it)
_REVOKE = (
    update(grants)
    .where(grants.c.zone_id == bindparam("in_zone"), grants.c.id == bindparam("grant_id"))
    .values(
        status="revoked",
        updated_at=case((grants.c.status == "revoked", grants.c.updated_at), else_=func.now()),
    )
    .returning(grants.c.user_id)
)


async def revoke_grant(conn: AsyncConnection, zone_id: str, grant_id: str, caller: Caller) -> int:
    """Revoke the grant (again, if it already is) and every active session of its user in the zone,
    each with its `caracal.sessions.revoke` entry. Returns how many sessions were revoked."""
    row = (await conn.execute(_REVOKE, {"in_zone": zone_id, "grant_id": grant_id})).first()
    if row is None:
        raise NotFound("grant_not_found", f"grant {grant_id} does not exist")
    revoked = await revoke_subject_sessions(
        conn,
        zone_id,
        row.user_id,
        reason="grant_revoked",
        extra={"grant_id": grant_id},
        request_id=caller.request_id,
    )
    await entity_changed(conn, "grant.revoked", zone_id, grant_id, caller)
    return revoked
