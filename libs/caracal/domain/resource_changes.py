"""Creating, changing and archiving resources, with their Gateway bindings, in the caller's transaction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from caracal.db.tables.resources import RESOURCES_ZONE_ID_IDENTIFIER_KEY, resources
from caracal.db.tables.zones import zones
from caracal.domain.applications import require_live_application
from caracal.domain.changes import entity_changed
from caracal.domain.context import Caller
from caracal.domain.gateway_bindings import sync_binding
from caracal.domain.providers import ensure_none_provider, require_live_provider
from caracal.domain.resource_rules import (
    ResourceRules,
    check_binding,
    check_identifier,
    check_upstream_url,
    default_identifier,
    invalid,
)
from caracal.domain.resources import (
    IN_ZONE,
    READ_ONE,
    ROW,
    UNSET,
    Resource,
    ResourceCreate,
    ResourceUpdate,
    resource_not_found,
    resource_wire,
)
from caracal.domain.zones import first_free
from caracal.errors import Conflict, InvalidInput, NotFound
from caracal.ids import new_id

# NO KEY UPDATE locks: writers of the same row take turns, while inserts that only reference the
# row (grants naming the resource, anything created in the zone) pass their foreign-key checks.
_LOCKED = READ_ONE.with_for_update(of=resources, key_share=True)
_ZONE_TURN = (
    select(zones.c.id)
    .where(zones.c.id == bindparam("zone_id"), zones.c.archived_at.is_(None))
    .with_for_update(key_share=True)
)
# An UPDATE reserves its columns' names for the SET clause: the zone is bound as `in_zone` here.
_TARGET = (
    resources.c.zone_id == bindparam("in_zone"),
    resources.c.id == bindparam("resource_id"),
    resources.c.archived_at.is_(None),
)
# Counts at most `max` rows: the quota's cost does not grow past the quota.
_AT_QUOTA = select(func.count() >= bindparam("max")).select_from(
    select(resources.c.id).where(*IN_ZONE).limit(bindparam("max")).subquery()
)
_TAKEN = select(resources.c.identifier).where(
    resources.c.zone_id == bindparam("zone_id"), resources.c.identifier == func.any(bindparam("candidates"))
)
_INSERT = insert(resources).returning(*ROW)
# a generated identifier that a rename took meanwhile returns no row (no savepoint needed)
_INSERT_IF_FREE = (
    pg_insert(resources).on_conflict_do_nothing(constraint=RESOURCES_ZONE_ID_IDENTIFIER_KEY).returning(*ROW)
)
_ARCHIVE = (
    update(resources)
    .where(*_TARGET, resources.c.identifier != bindparam("control"))
    .values(archived_at=func.now(), updated_at=func.now())
    .returning(resources.c.identifier)
)


_MANAGED_ELSEWHERE = "control API resource is managed only through the Control console path"


def _protected(detail: str) -> Conflict:
    return Conflict("protected_resource", detail)


async def _require_gateway_application(conn: AsyncConnection, zone_id: str, application_id: str) -> None:
    try:
        await require_live_application(conn, zone_id, application_id)
    except NotFound as exc:
        raise NotFound(
            "gateway_application_not_found",
            f"application {application_id} does not exist in this zone, is archived or has expired",
        ) from exc


def _requested_identifier(data: ResourceCreate, rules: ResourceRules) -> tuple[str, bool]:
    """The identifier asked for, and whether it is a default that may take a collision suffix."""
    if isinstance(data.identifier, str):
        return data.identifier, False
    if isinstance(data.name, str):
        base = default_identifier(data.name)
        return base, not rules.is_control(base)
    raise invalid("give a name or an identifier")


async def _check_quota(conn: AsyncConnection, zone_id: str, rules: ResourceRules) -> None:
    if rules.max_per_zone <= 0:
        return
    if (await conn.execute(_AT_QUOTA, {"zone_id": zone_id, "max": rules.max_per_zone})).scalar_one():
        raise Conflict("resource_quota_exceeded", f"the zone holds {rules.max_per_zone} resources already")


async def _insert_generated(conn: AsyncConnection, values: dict[str, Any], name: str | None) -> Any:
    """`base`, `base-2` … `base-999`, then `base-<uuidv7 hex>`, among every resource of the zone."""
    base = values["identifier"]
    candidates = [base, *(f"{base}-{n}" for n in range(2, 1000))]
    for _attempt in range(3):
        found = await conn.execute(_TAKEN, {"zone_id": values["zone_id"], "candidates": candidates})
        identifier = first_free(base, set(found.scalars().all()))
        row = (
            await conn.execute(
                _INSERT_IF_FREE, {**values, "identifier": identifier, "name": name or identifier}
            )
        ).first()
        if row is not None:
            return row
    raise Conflict("resource_identifier_conflict", "could not find a free identifier; give one")


@dataclass(frozen=True, slots=True)
class _Checked:
    """A create or update body past every rule that needs no write."""

    identifier: str
    control: bool
    upstream_url: str | None
    provider_id: str | None
    application_id: str | None


def _given(value: Any) -> Any:
    return None if value is UNSET else value


async def _check_create(
    conn: AsyncConnection, zone_id: str, data: ResourceCreate, rules: ResourceRules
) -> tuple[_Checked, bool]:
    """The contract's order after zone_not_found; the quota is the caller's, last."""
    identifier, generated = _requested_identifier(data, rules)
    checked = _Checked(
        identifier,
        rules.is_control(identifier),
        _given(data.upstream_url),
        _given(data.credential_provider_id) or None,
        _given(data.gateway_application_id),
    )
    check_upstream_url(checked.upstream_url)
    check_identifier(identifier, rules)
    if checked.control and not rules.manage_control:
        raise _protected(_MANAGED_ELSEWHERE)
    if checked.provider_id:
        await require_live_provider(conn, zone_id, checked.provider_id)
    if not checked.control:
        check_binding(checked.provider_id, checked.upstream_url, checked.application_id)
    if checked.application_id:
        await _require_gateway_application(conn, zone_id, checked.application_id)
    return checked, generated


async def create_resource(
    conn: AsyncConnection, zone_id: str, data: ResourceCreate, rules: ResourceRules, caller: Caller
) -> Resource:
    # zone_not_found comes first; the lock makes creators in one zone take turns, so the quota
    # count and the free-identifier search cannot both pass for two of them
    if (await conn.execute(_ZONE_TURN, {"zone_id": zone_id})).first() is None:
        raise NotFound("zone_not_found", f"zone {zone_id} does not exist")
    checked, generated = await _check_create(conn, zone_id, data, rules)
    await _check_quota(conn, zone_id, rules)
    values = {
        "id": new_id(),
        "zone_id": zone_id,
        "identifier": checked.identifier,
        "upstream_url": checked.upstream_url,
        "scopes": data.scopes,
        "credential_provider_id": checked.provider_id or await ensure_none_provider(conn, zone_id, caller),
    }
    name = _given(data.name)
    if generated:
        row = await _insert_generated(conn, values, name)
    else:
        row = (await conn.execute(_INSERT, {**values, "name": name or checked.identifier})).one()
    bound = None if checked.control else checked.application_id
    await sync_binding(conn, zone_id, row.identifier, bound)
    await entity_changed(conn, "resource.created", row.zone_id, row.id, caller)
    return resource_wire(row, bound)


_COLUMN_FIELDS = ("name", "identifier", "upstream_url", "scopes", "credential_provider_id")


async def _check_update_references(conn: AsyncConnection, zone_id: str, data: ResourceUpdate) -> None:
    """Before the resource is looked up (the contract's order): the body's provider and application."""
    if isinstance(data.upstream_url, str):
        check_upstream_url(data.upstream_url)
    if isinstance(data.credential_provider_id, str) and data.credential_provider_id:
        await require_live_provider(conn, zone_id, data.credential_provider_id)
    if isinstance(data.gateway_application_id, str):
        await _require_gateway_application(conn, zone_id, data.gateway_application_id)


def _merged(data: ResourceUpdate, current: Any, rules: ResourceRules) -> _Checked:
    """The resource as it would be after the PATCH, checked as a POST would check it."""
    identifier = current.identifier if data.identifier is UNSET else data.identifier
    if data.identifier is not UNSET:
        check_identifier(identifier, rules)
    merged = _Checked(
        identifier,
        rules.is_control(identifier),
        current.upstream_url if data.upstream_url is UNSET else data.upstream_url,
        current.credential_provider_id
        if data.credential_provider_id is UNSET
        else data.credential_provider_id or None,
        current.gateway_application_id
        if data.gateway_application_id is UNSET
        else data.gateway_application_id,
    )
    if (merged.control or rules.is_control(current.identifier)) and not rules.manage_control:
        raise _protected(_MANAGED_ELSEWHERE)
    if not merged.control:
        check_binding(merged.provider_id, merged.upstream_url, merged.application_id)
    return merged


async def update_resource(
    conn: AsyncConnection,
    zone_id: str,
    resource_id: str,
    data: ResourceUpdate,
    *,
    rules: ResourceRules,
    caller: Caller,
) -> Resource:
    await _check_update_references(conn, zone_id, data)
    current = (await conn.execute(_LOCKED, {"zone_id": zone_id, "resource_id": resource_id})).first()
    if current is None:
        raise resource_not_found(resource_id)
    merged = _merged(data, current, rules)
    changes = {name: getattr(data, name) for name in _COLUMN_FIELDS if getattr(data, name) is not UNSET}
    if not changes and data.gateway_application_id is UNSET:
        raise InvalidInput("no_fields", "nothing to update")
    if "credential_provider_id" in changes:
        changes["credential_provider_id"] = merged.provider_id or await ensure_none_provider(
            conn, zone_id, caller
        )
    row = (
        await conn.execute(
            update(resources).where(*_TARGET).values(**changes, updated_at=func.now()).returning(*ROW),
            {"in_zone": zone_id, "resource_id": resource_id},
        )
    ).one()
    bound = None if merged.control else merged.application_id
    if data.identifier is not UNSET or data.gateway_application_id is not UNSET:
        await sync_binding(conn, zone_id, row.identifier, bound, previous_identifier=current.identifier)
    await entity_changed(conn, "resource.updated", row.zone_id, row.id, caller)
    return resource_wire(row, bound)


async def delete_resource(
    conn: AsyncConnection, zone_id: str, resource_id: str, rules: ResourceRules, caller: Caller
) -> None:
    """Archive (never the control resource, whatever the headers) and unbind it from the Gateway."""
    archived = {"in_zone": zone_id, "resource_id": resource_id, "control": rules.control_audience}
    row = (await conn.execute(_ARCHIVE, archived)).first()
    if row is None:
        if (await conn.execute(READ_ONE, {"zone_id": zone_id, "resource_id": resource_id})).first():
            raise _protected("control API resource cannot be deleted")
        raise resource_not_found(resource_id)
    await sync_binding(conn, zone_id, row.identifier, None)
    await entity_changed(conn, "resource.deleted", zone_id, resource_id, caller)
