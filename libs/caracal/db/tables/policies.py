"""Policies and their immutable versions; policy sets, their versions and the zone's bindings.

The STS reads `policy_set_bindings`, `policy_set_versions (id, manifest_json, manifest_sha256,
schema_version)` and `policy_versions (id, content)` straight from the database (CONTRACT.md §5.5),
so names, columns and formats are the original's (§7.4). A version, once written, never changes:
the database itself refuses UPDATE and DELETE of a policy version or a policy-set version (a bundle
or an STS that loaded a version by id can trust it to stay what it was).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    Column,
    Connection,
    ForeignKeyConstraint,
    Index,
    Integer,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
    event,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from caracal.db.tables import TS, aggregate, metadata

POLICIES_PKEY = "policies_pkey"
POLICIES_ZONE_ID_FKEY = "policies_zone_id_fkey"
POLICIES_ZONE_ID_NAME_KEY = "policies_zone_id_name_key"
POLICIES_NAME_CHECK = "policies_name_check"
POLICIES_LIVE_PAGE_IDX = "policies_live_page_idx"

POLICY_VERSIONS_PKEY = "policy_versions_pkey"
POLICY_VERSIONS_POLICY_ID_FKEY = "policy_versions_policy_id_fkey"
POLICY_VERSIONS_POLICY_ID_VERSION_KEY = "policy_versions_policy_id_version_key"
POLICY_VERSIONS_VERSION_CHECK = "policy_versions_version_check"
POLICY_VERSIONS_IMMUTABLE = "policy_versions_immutable"

POLICY_SETS_PKEY = "policy_sets_pkey"
POLICY_SETS_ZONE_ID_FKEY = "policy_sets_zone_id_fkey"
POLICY_SETS_ZONE_ID_ID_KEY = "policy_sets_zone_id_id_key"
POLICY_SETS_ZONE_ID_NAME_KEY = "policy_sets_zone_id_name_key"
POLICY_SETS_NAME_CHECK = "policy_sets_name_check"
POLICY_SETS_LIVE_PAGE_IDX = "policy_sets_live_page_idx"

POLICY_SET_VERSIONS_PKEY = "policy_set_versions_pkey"
POLICY_SET_VERSIONS_POLICY_SET_ID_FKEY = "policy_set_versions_policy_set_id_fkey"
POLICY_SET_VERSIONS_POLICY_SET_ID_VERSION_KEY = "policy_set_versions_policy_set_id_version_key"
POLICY_SET_VERSIONS_POLICY_SET_ID_ID_KEY = "policy_set_versions_policy_set_id_id_key"
POLICY_SET_VERSIONS_VERSION_CHECK = "policy_set_versions_version_check"
POLICY_SET_VERSIONS_IMMUTABLE = "policy_set_versions_immutable"

POLICY_SET_BINDINGS_PKEY = "policy_set_bindings_pkey"
POLICY_SET_BINDINGS_ZONE_ID_FKEY = "policy_set_bindings_zone_id_fkey"
POLICY_SET_BINDINGS_POLICY_SET_FKEY = "policy_set_bindings_policy_set_fkey"
POLICY_SET_BINDINGS_ACTIVE_VERSION_FKEY = "policy_set_bindings_active_version_fkey"
POLICY_SET_BINDINGS_SHADOW_VERSION_FKEY = "policy_set_bindings_shadow_version_fkey"
POLICY_SET_BINDINGS_ONE_ACTIVE_UIDX = "policy_set_bindings_one_active_uidx"

# The one trigger function both version tables use; migration 0004 creates the same text.
REFUSE_VERSION_CHANGE_FUNCTION = """
CREATE OR REPLACE FUNCTION caracal_refuse_version_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING MESSAGE = TG_TABLE_NAME || ' rows are immutable',
        ERRCODE = 'restrict_violation';
END
$$
"""


def refuse_version_change_trigger(name: str, table: str) -> str:
    return (
        f"CREATE TRIGGER {name} BEFORE UPDATE OR DELETE ON {table}"
        " FOR EACH ROW EXECUTE FUNCTION caracal_refuse_version_change()"
    )


policies = Table(
    "policies",
    metadata,
    Column("id", Text, nullable=False),
    Column("zone_id", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("description", Text),
    Column("owner_type", Text, nullable=False, server_default=text("'customer'::text")),
    Column("archived_at", TS),
    Column("created_by", Text, nullable=False),
    Column("created_at", TS, nullable=False, server_default=text("now()")),
    Column("updated_at", TS, nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("id", name=POLICIES_PKEY),
    ForeignKeyConstraint(["zone_id"], ["zones.id"], name=POLICIES_ZONE_ID_FKEY),
    UniqueConstraint("zone_id", "name", name=POLICIES_ZONE_ID_NAME_KEY),
    CheckConstraint("length(name) > 0", name=POLICIES_NAME_CHECK),
    info=aggregate("policy"),
)

Index(
    POLICIES_LIVE_PAGE_IDX,
    policies.c.zone_id,
    policies.c.created_at.desc(),
    policies.c.id.desc(),
    postgresql_where=policies.c.archived_at.is_(None),
)

policy_versions = Table(
    "policy_versions",
    metadata,
    Column("id", Text, nullable=False),
    Column("policy_id", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("content", Text, nullable=False),
    Column("content_sha256", Text, nullable=False),
    Column("schema_version", Text, nullable=False),
    Column("created_by", Text, nullable=False),
    Column("created_at", TS, nullable=False, server_default=text("now()")),
    Column("archived_at", TS),
    PrimaryKeyConstraint("id", name=POLICY_VERSIONS_PKEY),
    ForeignKeyConstraint(["policy_id"], ["policies.id"], name=POLICY_VERSIONS_POLICY_ID_FKEY),
    # also the index of a policy's versions, newest first, and of max(version)
    UniqueConstraint("policy_id", "version", name=POLICY_VERSIONS_POLICY_ID_VERSION_KEY),
    CheckConstraint("version > 0", name=POLICY_VERSIONS_VERSION_CHECK),
    info=aggregate("policy_version", invalid="invalid_policy"),
)

policy_sets = Table(
    "policy_sets",
    metadata,
    Column("id", Text, nullable=False),
    Column("zone_id", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("description", Text),
    Column("scope_type", Text, nullable=False, server_default=text("'zone'::text")),
    Column("owner_type", Text, nullable=False, server_default=text("'customer'::text")),
    Column("archived_at", TS),
    Column("created_by", Text, nullable=False),
    Column("created_at", TS, nullable=False, server_default=text("now()")),
    Column("updated_at", TS, nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("id", name=POLICY_SETS_PKEY),
    ForeignKeyConstraint(["zone_id"], ["zones.id"], name=POLICY_SETS_ZONE_ID_FKEY),
    UniqueConstraint("zone_id", "id", name=POLICY_SETS_ZONE_ID_ID_KEY),
    UniqueConstraint("zone_id", "name", name=POLICY_SETS_ZONE_ID_NAME_KEY),
    CheckConstraint("length(name) > 0", name=POLICY_SETS_NAME_CHECK),
    info=aggregate("policy_set"),
)

Index(
    POLICY_SETS_LIVE_PAGE_IDX,
    policy_sets.c.zone_id,
    policy_sets.c.created_at.desc(),
    policy_sets.c.id.desc(),
    postgresql_where=policy_sets.c.archived_at.is_(None),
)

policy_set_versions = Table(
    "policy_set_versions",
    metadata,
    Column("id", Text, nullable=False),
    Column("policy_set_id", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("manifest_json", JSONB, nullable=False),
    Column("manifest_sha256", Text, nullable=False),
    Column("schema_version", Text, nullable=False),
    Column("created_by", Text, nullable=False),
    Column("created_at", TS, nullable=False, server_default=text("now()")),
    Column("archived_at", TS),
    PrimaryKeyConstraint("id", name=POLICY_SET_VERSIONS_PKEY),
    ForeignKeyConstraint(["policy_set_id"], ["policy_sets.id"], name=POLICY_SET_VERSIONS_POLICY_SET_ID_FKEY),
    UniqueConstraint("policy_set_id", "version", name=POLICY_SET_VERSIONS_POLICY_SET_ID_VERSION_KEY),
    # the bindings' key: a set can only be bound to one of its own versions
    UniqueConstraint("policy_set_id", "id", name=POLICY_SET_VERSIONS_POLICY_SET_ID_ID_KEY),
    CheckConstraint("version > 0", name=POLICY_SET_VERSIONS_VERSION_CHECK),
    info=aggregate("policy_set_version", invalid="invalid_policy_set"),
)

policy_set_bindings = Table(
    "policy_set_bindings",
    metadata,
    Column("zone_id", Text, nullable=False),
    Column("policy_set_id", Text, nullable=False),
    Column("active_version_id", Text),
    Column("shadow_version_id", Text),
    Column("updated_at", TS, nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("zone_id", "policy_set_id", name=POLICY_SET_BINDINGS_PKEY),
    ForeignKeyConstraint(["zone_id"], ["zones.id"], name=POLICY_SET_BINDINGS_ZONE_ID_FKEY),
    ForeignKeyConstraint(
        ["zone_id", "policy_set_id"],
        ["policy_sets.zone_id", "policy_sets.id"],
        name=POLICY_SET_BINDINGS_POLICY_SET_FKEY,
    ),
    ForeignKeyConstraint(
        ["policy_set_id", "active_version_id"],
        ["policy_set_versions.policy_set_id", "policy_set_versions.id"],
        name=POLICY_SET_BINDINGS_ACTIVE_VERSION_FKEY,
    ),
    ForeignKeyConstraint(
        ["policy_set_id", "shadow_version_id"],
        ["policy_set_versions.policy_set_id", "policy_set_versions.id"],
        name=POLICY_SET_BINDINGS_SHADOW_VERSION_FKEY,
    ),
    info=aggregate("policy_set_binding", invalid="invalid_policy_set"),
)

# The STS loads `WHERE zone_id = $1 AND active_version_id IS NOT NULL LIMIT 1` with no ORDER BY:
# at most one active binding per zone, or its choice would be a coin toss (CONTRACT.md §7.8 A1).
# Activation clears the zone's other bindings before setting its own (the index is not deferrable).
Index(
    POLICY_SET_BINDINGS_ONE_ACTIVE_UIDX,
    policy_set_bindings.c.zone_id,
    unique=True,
    postgresql_where=policy_set_bindings.c.active_version_id.isnot(None),
)


def _immutable(trigger: str) -> Callable[..., None]:
    """An after_create hook: the trigger function (shared, idempotent) and this table's trigger."""

    def create(target: Table, connection: Connection, **_: Any) -> None:
        connection.execute(text(REFUSE_VERSION_CHANGE_FUNCTION))
        connection.execute(text(refuse_version_change_trigger(trigger, target.name)))

    return create


event.listen(policy_versions, "after_create", _immutable(POLICY_VERSIONS_IMMUTABLE))
event.listen(policy_set_versions, "after_create", _immutable(POLICY_SET_VERSIONS_IMMUTABLE))
