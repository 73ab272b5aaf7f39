"""Policy-set versions: immutable manifests numbered max+1 per set, the contract check, their reads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
from sqlalchemy import bindparam, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from caracal.db.paging import Listing, Page, PagedQuery, listing
from caracal.db.query import Query
from caracal.db.tables.policies import policy_set_versions, policy_sets
from caracal.domain.changes import entity_changed
from caracal.domain.context import Caller
from caracal.domain.policy_set_manifest import (
    DEFAULT_SCHEMA_VERSION,
    MAX_ENTRIES,
    ReferencedVersion,
    canonical_manifest,
    contract_violation,
    manifest_ids,
    manifest_sha256,
    schema_violation,
)
from caracal.domain.policy_set_rego import rego_code
from caracal.domain.wire import LenientBody, Name, Resource, Text, Timestamp
from caracal.errors import NotFound, Unprocessable
from caracal.ids import new_id
from caracal.timefmt import iso_ms


class ManifestEntry(LenientBody):
    policy_version_id: Name


class PolicySetVersionCreate(LenientBody):
    manifest: Annotated[list[ManifestEntry], msgspec.Meta(min_length=1, max_length=MAX_ENTRIES)]
    schema_version: Text = DEFAULT_SCHEMA_VERSION


class PolicySetVersion(Resource):
    id: str
    policy_set_id: str
    version: int
    manifest_sha256: str
    schema_version: str
    created_at: Timestamp


class PolicySetVersionCreated(PolicySetVersion):
    version_id: str  # the id again, where the original's later clients read it (DESIGN.md)


class PolicySetVersionDetail(PolicySetVersion):
    manifest_json: Any
    policies: list[str]


@dataclass(frozen=True, slots=True)
class CheckedVersion:
    """A version of the set that passed the contract check, as activation and simulation use it."""

    id: str
    version: int
    schema_version: str
    manifest_sha256: str
    policy_version_ids: list[str]
    contents: dict[str, str]  # policy version id -> Rego module


_V = policy_set_versions
_COLUMNS = (
    _V.c.id,
    _V.c.policy_set_id,
    _V.c.version,
    _V.c.manifest_sha256,
    _V.c.schema_version,
    _V.c.created_at,
)
_OF_LIVE_SET = (
    _V.c.policy_set_id == bindparam("policy_set_id"),
    policy_sets.c.zone_id == bindparam("zone_id"),
    policy_sets.c.archived_at.is_(None),
)
_JOINED = _V.join(policy_sets, policy_sets.c.id == _V.c.policy_set_id)
_ONE = (
    select(*_COLUMNS, _V.c.manifest_json)
    .select_from(_JOINED)
    .where(*_OF_LIVE_SET, _V.c.id == bindparam("id"))
)
_GET = Query(_ONE)
_PAGE = PagedQuery(select(*_COLUMNS).select_from(_JOINED).where(*_OF_LIVE_SET), _V.c.created_at, _V.c.id)
_LIVE_SET = Query(
    select(policy_sets.c.id).where(
        policy_sets.c.id == bindparam("policy_set_id"),
        policy_sets.c.zone_id == bindparam("zone_id"),
        policy_sets.c.archived_at.is_(None),
    )
)
# Creators of one set's versions take turns on its row (the number is max+1); archiving waits too.
_LOCK_SET = (
    select(policy_sets.c.id)
    .where(
        policy_sets.c.id == bindparam("policy_set_id"),
        policy_sets.c.zone_id == bindparam("zone_id"),
        policy_sets.c.archived_at.is_(None),
    )
    .with_for_update(key_share=True)
)
_INSERT = text(
    """
    INSERT INTO policy_set_versions
           (id, policy_set_id, version, manifest_json, manifest_sha256, schema_version, created_by)
    SELECT :id, :policy_set_id, coalesce(max(version), 0) + 1, CAST(:manifest AS jsonb), :sha,
           :schema_version, :created_by
      FROM policy_set_versions WHERE policy_set_id = :policy_set_id
    RETURNING id, policy_set_id, version, manifest_sha256, schema_version, created_at
    """
)
_REFERENCED = text(
    """
    SELECT pv.id, pv.schema_version, pv.content
      FROM policy_versions pv JOIN policies p ON p.id = pv.policy_id
     WHERE pv.id = ANY(:ids) AND p.zone_id = :zone_id
    """
)


def version_wire(row: Any) -> PolicySetVersion:
    return PolicySetVersion(
        id=row.id,
        policy_set_id=row.policy_set_id,
        version=row.version,
        manifest_sha256=row.manifest_sha256,
        schema_version=row.schema_version,
        created_at=iso_ms(row.created_at),
    )


async def referenced_versions(
    conn: AsyncConnection, zone_id: str, ids: list[str]
) -> dict[str, ReferencedVersion]:
    """The named policy versions of this zone (archived policies' included, as the contract says)."""
    rows = (await conn.execute(_REFERENCED, {"ids": list(set(ids)), "zone_id": zone_id})).all()
    return {row.id: ReferencedVersion(row.id, row.schema_version, row.content) for row in rows}


async def create_version(
    conn: AsyncConnection, zone_id: str, set_id: str, data: PolicySetVersionCreate, caller: Caller
) -> PolicySetVersionCreated:
    schema = schema_violation(data.schema_version)
    if schema is not None:
        raise Unprocessable("invalid_schema_version", schema)
    locked = await conn.execute(_LOCK_SET, {"policy_set_id": set_id, "zone_id": zone_id})
    if locked.first() is None:
        raise NotFound("policy_set_not_found", f"policy set {set_id} does not exist in this zone")
    ids = [entry.policy_version_id for entry in data.manifest]
    found = await referenced_versions(conn, zone_id, ids)
    failure = await contract_violation(ids, data.schema_version, found, rego_code)
    if failure is not None:
        raise Unprocessable("invalid_policy_contract", failure)
    canonical = canonical_manifest(ids)
    values = {
        "id": new_id(),
        "policy_set_id": set_id,
        "manifest": canonical,
        "sha": manifest_sha256(canonical),
        "schema_version": data.schema_version,
        "created_by": caller.actor_name,
    }
    row = (await conn.execute(_INSERT, values)).one()
    await entity_changed(conn, "policy_set.version_created", zone_id, row.id, caller)
    created = version_wire(row)
    return PolicySetVersionCreated(**msgspec.structs.asdict(created), version_id=row.id)


async def get_version(
    conn: AsyncConnection, zone_id: str, set_id: str, version_id: str
) -> PolicySetVersionDetail:
    row = await _GET.first(conn, {"zone_id": zone_id, "policy_set_id": set_id, "id": version_id})
    if row is None:
        raise NotFound(
            "policy_set_version_not_found", f"version {version_id} of policy set {set_id} does not exist"
        )
    base = msgspec.structs.asdict(version_wire(row))
    return PolicySetVersionDetail(
        **base, manifest_json=row.manifest_json, policies=manifest_ids(row.manifest_json)
    )


async def list_versions(
    conn: AsyncConnection, zone_id: str, set_id: str, page: Page
) -> Listing[PolicySetVersion]:
    rows = await _PAGE.rows(conn, page, zone_id=zone_id, policy_set_id=set_id)
    # an empty page is the set's (no versions yet, or past the last) or no set of this zone's: 404
    if not rows and await _LIVE_SET.first(conn, {"zone_id": zone_id, "policy_set_id": set_id}) is None:
        raise NotFound("policy_set_not_found", f"policy set {set_id} does not exist in this zone")
    return listing(rows, page, version_wire)


async def checked_version(
    conn: AsyncConnection,
    zone_id: str,
    set_id: str,
    version_id: str,
    not_found: str,
    *,
    shadow: bool = False,
) -> CheckedVersion:
    """A version of the live set that passes the contract check again (404 `not_found`, 422)."""
    row = (await conn.execute(_ONE, {"zone_id": zone_id, "policy_set_id": set_id, "id": version_id})).first()
    if row is None:
        raise NotFound(not_found, f"version {version_id} of policy set {set_id} does not exist")
    ids = manifest_ids(row.manifest_json)
    found = await referenced_versions(conn, zone_id, ids)
    failure = await contract_violation(ids, row.schema_version, found, rego_code)
    if failure is not None:
        code = "invalid_shadow_policy_contract" if shadow else "invalid_policy_contract"
        raise Unprocessable(code, failure)
    contents = {version: found[version].content for version in ids}
    return CheckedVersion(row.id, row.version, row.schema_version, row.manifest_sha256, ids, contents)
