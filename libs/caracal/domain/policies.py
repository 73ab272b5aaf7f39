"""Policies and their immutable versions (CONTRACT.md §4.5): Rego checked on every write, nothing
invalid stored, versions numbered max+1 one writer at a time, soft delete, events."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import msgspec
from sqlalchemy import bindparam, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from caracal import rego
from caracal.db.locks import POLICY_VERSION_PREFIX
from caracal.db.paging import Listing, Page, PagedQuery, listing
from caracal.db.query import Query
from caracal.db.tables.policies import policies, policy_versions
from caracal.domain.changes import entity_changed
from caracal.domain.context import Caller
from caracal.domain.wire import LenientBody, Name, Resource, Text, Timestamp
from caracal.domain.zones import require_live_zone
from caracal.errors import NotFound, Unprocessable
from caracal.ids import new_id
from caracal.rego import RegoCheck
from caracal.timefmt import iso_ms

SCHEMA_VERSIONS = ("2026-03-16", "2026-05-20")
DEFAULT_SCHEMA_VERSION = "2026-05-20"
INPUT_SCHEMA_VERSION = "2026-05-20"


class PolicyVersionCreate(LenientBody):
    content: Name  # one character at least, no NUL
    schema_version: Text = DEFAULT_SCHEMA_VERSION


class PolicyCreate(LenientBody):
    name: Name
    content: Name
    description: Text | msgspec.UnsetType = msgspec.UNSET
    owner_type: Text = "customer"
    schema_version: Text = DEFAULT_SCHEMA_VERSION


class Policy(Resource):
    id: str
    zone_id: str
    name: str
    description: str | None
    owner_type: str
    created_by: str
    created_at: Timestamp


class PolicyVersion(Resource):
    id: str
    policy_id: str
    version: int
    content_sha256: str
    schema_version: str
    created_at: Timestamp


class PolicyVersionCreated(PolicyVersion):
    version_id: str  # the original's later clients read it (DESIGN.md)


class PolicyVersionRow(Resource):
    """Every column of a policy_versions row, as GET one lists them."""

    id: str
    policy_id: str
    version: int
    content: str
    content_sha256: str
    schema_version: str
    created_by: str
    created_at: Timestamp
    archived_at: Timestamp | None


class PolicyDetail(Resource):
    id: str
    zone_id: str
    name: str
    description: str | None
    owner_type: str
    created_at: Timestamp
    versions: list[PolicyVersionRow]


class PolicyCreated(Resource):
    id: str
    zone_id: str
    name: str
    description: str | None
    version: PolicyVersion
    version_id: str


@dataclass(frozen=True)
class CheckedContent:
    """Policy content and the verdict on it, reached before any transaction opens."""

    content: str
    schema_version: str
    check: RegoCheck | None  # None: the schema version is refused, so Rego was not asked

    def require_valid(self) -> None:
        """422 `invalid_schema_version` / `invalid_rego`, the contract's `detail` plus line and column."""
        if self.check is None:
            detail = f"unsupported_schema_version:{self.schema_version}"
            raise Unprocessable("invalid_schema_version", detail)
        if not self.check.ok:
            raise Unprocessable("invalid_rego", self.check.detail)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content.encode()).hexdigest()


async def checked_content(content: str, schema_version: str) -> CheckedContent:
    """The schema version, then the module itself (in a Rego worker, off the event loop)."""
    if schema_version not in SCHEMA_VERSIONS:
        return CheckedContent(content, schema_version, None)
    return CheckedContent(content, schema_version, await rego.check(content))


_POLICY_COLUMNS = (
    policies.c.id,
    policies.c.zone_id,
    policies.c.name,
    policies.c.description,
    policies.c.owner_type,
    policies.c.created_by,
    policies.c.created_at,
)
_LIVE = (policies.c.zone_id == bindparam("zone_id"), policies.c.archived_at.is_(None))
_PAGE = PagedQuery(select(*_POLICY_COLUMNS).where(*_LIVE), policies.c.created_at, policies.c.id)
_VERSION_COLUMNS = [c.label(f"v_{c.name}") for c in policy_versions.c]
# the policy and its versions, newest first, in one round trip (a policy always has version 1)
_GET = Query(
    select(*_POLICY_COLUMNS, *_VERSION_COLUMNS)
    .select_from(policies.outerjoin(policy_versions, policy_versions.c.policy_id == policies.c.id))
    .where(policies.c.id == bindparam("policy_id"), *_LIVE)
    .order_by(policy_versions.c.version.desc())
)
_INSERT_POLICY = insert(policies).returning(*_POLICY_COLUMNS)
_VERSION_RETURNING = (
    policy_versions.c.id,
    policy_versions.c.policy_id,
    policy_versions.c.version,
    policy_versions.c.content_sha256,
    policy_versions.c.schema_version,
    policy_versions.c.created_at,
)
_INSERT_VERSION = insert(policy_versions).returning(*_VERSION_RETURNING)
_NEXT_VERSION = (
    select(func.coalesce(func.max(policy_versions.c.version), 0) + 1)
    .where(policy_versions.c.policy_id == bindparam("of_policy"))
    .scalar_subquery()
)
_INSERT_NEXT_VERSION = insert(policy_versions).values(version=_NEXT_VERSION).returning(*_VERSION_RETURNING)
# Writers of one policy's versions take turns (max+1 is only safe one at a time); the lock is
# taken only when the policy is live in the zone, so the same statement answers 404.
_LOCK_LIVE_POLICY = text(
    "SELECT pg_advisory_xact_lock(hashtext(:key)) FROM policies"
    " WHERE id = :policy_id AND zone_id = :zone_id AND archived_at IS NULL"
)
_ARCHIVE = (
    update(policies)
    .where(
        policies.c.id == bindparam("b_policy_id"),
        policies.c.zone_id == bindparam("b_zone_id"),
        policies.c.archived_at.is_(None),
    )
    .values(archived_at=func.now(), updated_at=func.now())
    .returning(policies.c.id)
)


def policy_wire(row: Any) -> Policy:
    return Policy(
        id=row.id,
        zone_id=row.zone_id,
        name=row.name,
        description=row.description,
        owner_type=row.owner_type,
        created_by=row.created_by,
        created_at=iso_ms(row.created_at),
    )


def version_wire(row: Any) -> PolicyVersion:
    return PolicyVersion(
        id=row.id,
        policy_id=row.policy_id,
        version=row.version,
        content_sha256=row.content_sha256,
        schema_version=row.schema_version,
        created_at=iso_ms(row.created_at),
    )


def _version_row(row: Any) -> PolicyVersionRow:
    return PolicyVersionRow(
        id=row.v_id,
        policy_id=row.v_policy_id,
        version=row.v_version,
        content=row.v_content,
        content_sha256=row.v_content_sha256,
        schema_version=row.v_schema_version,
        created_by=row.v_created_by,
        created_at=iso_ms(row.v_created_at),
        archived_at=iso_ms(row.v_archived_at),
    )


def policy_not_found(policy_id: str) -> NotFound:
    return NotFound("policy_not_found", f"policy {policy_id} does not exist")


async def list_policies(conn: AsyncConnection, zone_id: str, page: Page) -> Listing[Policy]:
    return listing(await _PAGE.rows(conn, page, zone_id=zone_id), page, policy_wire)


async def get_policy(conn: AsyncConnection, zone_id: str, policy_id: str) -> PolicyDetail:
    rows = await _GET.rows(conn, {"zone_id": zone_id, "policy_id": policy_id})
    if not rows:
        raise policy_not_found(policy_id)
    head = rows[0]
    return PolicyDetail(
        id=head.id,
        zone_id=head.zone_id,
        name=head.name,
        description=head.description,
        owner_type=head.owner_type,
        created_at=iso_ms(head.created_at),
        versions=[_version_row(row) for row in rows if row.v_id is not None],
    )


def _version_values(checked: CheckedContent, policy_id: str, caller: Caller) -> dict[str, Any]:
    return {
        "id": new_id(),
        "policy_id": policy_id,
        "content": checked.content,
        "content_sha256": checked.sha256,
        "schema_version": checked.schema_version,
        "created_by": caller.actor_name,
    }


async def create_policy(
    conn: AsyncConnection, zone_id: str, body: PolicyCreate, checked: CheckedContent, caller: Caller
) -> PolicyCreated:
    """A policy and its version 1; a missing zone outranks bad content (the contract's order)."""
    await require_live_zone(conn, zone_id)
    checked.require_valid()
    description = body.description if isinstance(body.description, str) else None
    policy = (
        await conn.execute(
            _INSERT_POLICY,
            {
                "id": new_id(),
                "zone_id": zone_id,
                "name": body.name,
                "description": description,
                "owner_type": body.owner_type,
                "created_by": caller.actor_name,
            },
        )
    ).one()
    values = {**_version_values(checked, policy.id, caller), "version": 1}
    version = version_wire((await conn.execute(_INSERT_VERSION, values)).one())
    await entity_changed(conn, "policy.created", zone_id, policy.id, caller)
    return PolicyCreated(
        id=policy.id,
        zone_id=zone_id,
        name=policy.name,
        description=policy.description,
        version=version,
        version_id=version.id,
    )


async def create_policy_version(
    conn: AsyncConnection, zone_id: str, policy_id: str, checked: CheckedContent, caller: Caller
) -> PolicyVersionCreated:
    """Version max+1 of a live policy; bad content outranks a missing policy (the contract's order)."""
    checked.require_valid()
    params = {"key": f"{POLICY_VERSION_PREFIX}{policy_id}", "policy_id": policy_id, "zone_id": zone_id}
    if (await conn.execute(_LOCK_LIVE_POLICY, params)).first() is None:
        raise policy_not_found(policy_id)
    values = {**_version_values(checked, policy_id, caller), "of_policy": policy_id}
    row = (await conn.execute(_INSERT_NEXT_VERSION, values)).one()
    await entity_changed(conn, "policy.version_created", zone_id, policy_id, caller)
    return PolicyVersionCreated(**msgspec.structs.asdict(version_wire(row)), version_id=row.id)


async def delete_policy(conn: AsyncConnection, zone_id: str, policy_id: str, caller: Caller) -> None:
    """Soft delete: the policy disappears from reads; its versions stay for the sets naming them."""
    if (await conn.execute(_ARCHIVE, {"b_zone_id": zone_id, "b_policy_id": policy_id})).first() is None:
        raise policy_not_found(policy_id)
    await entity_changed(conn, "policy.deleted", zone_id, policy_id, caller)
