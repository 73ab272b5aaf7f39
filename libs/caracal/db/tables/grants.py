"""Delegated grants (an application acting for a user on a resource) and provider grants (a user's
sealed upstream OAuth tokens for a provider); the STS reads both."""

from __future__ import annotations

from sqlalchemy import (
    CheckConstraint,
    Column,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    Table,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY

from caracal.db.tables import TS, aggregate, metadata

GRANT_STATUSES = ("active", "revoked", "expired")
_STATUS_RULE = "status IN ('active', 'revoked', 'expired')"

DELEGATED_GRANTS_PKEY = "delegated_grants_pkey"
DELEGATED_GRANTS_ZONE_ID_FKEY = "delegated_grants_zone_id_fkey"
DELEGATED_GRANTS_APPLICATION_FKEY = "delegated_grants_application_fkey"
DELEGATED_GRANTS_RESOURCE_FKEY = "delegated_grants_resource_fkey"
DELEGATED_GRANTS_STATUS_CHECK = "delegated_grants_status_check"
DELEGATED_GRANTS_SCOPES_CHECK = "delegated_grants_scopes_check"
DELEGATED_GRANTS_PAGE_IDX = "delegated_grants_page_idx"
DELEGATED_GRANTS_USER_IDX = "delegated_grants_user_idx"
DELEGATED_GRANTS_APPLICATION_IDX = "delegated_grants_application_idx"
DELEGATED_GRANTS_RESOURCE_IDX = "delegated_grants_resource_idx"

PROVIDER_GRANTS_PKEY = "provider_grants_pkey"
PROVIDER_GRANTS_ZONE_ID_FKEY = "provider_grants_zone_id_fkey"
PROVIDER_GRANTS_RESOURCE_FKEY = "provider_grants_resource_fkey"
PROVIDER_GRANTS_PROVIDER_FKEY = "provider_grants_provider_fkey"
PROVIDER_GRANTS_STATUS_CHECK = "provider_grants_status_check"
PROVIDER_GRANTS_SCOPES_CHECK = "provider_grants_scopes_check"
PROVIDER_GRANTS_ACTIVE_TUPLE_UIDX = "provider_grants_active_tuple_uidx"

delegated_grants = Table(
    "delegated_grants",
    metadata,
    Column("id", Text, nullable=False),
    Column("zone_id", Text, nullable=False),
    Column("application_id", Text, nullable=False),
    Column("user_id", Text, nullable=False),
    Column("resource_id", Text, nullable=False),
    Column("scopes", ARRAY(Text), nullable=False),
    Column("status", Text, nullable=False, server_default=text("'active'::text")),
    Column("created_at", TS, nullable=False, server_default=text("now()")),
    Column("updated_at", TS, nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("id", name=DELEGATED_GRANTS_PKEY),
    ForeignKeyConstraint(["zone_id"], ["zones.id"], name=DELEGATED_GRANTS_ZONE_ID_FKEY),
    ForeignKeyConstraint(
        ["zone_id", "application_id"],
        ["applications.zone_id", "applications.id"],
        name=DELEGATED_GRANTS_APPLICATION_FKEY,
    ),
    ForeignKeyConstraint(
        ["zone_id", "resource_id"],
        ["resources.zone_id", "resources.id"],
        name=DELEGATED_GRANTS_RESOURCE_FKEY,
    ),
    CheckConstraint(_STATUS_RULE, name=DELEGATED_GRANTS_STATUS_CHECK),
    CheckConstraint("cardinality(scopes) > 0", name=DELEGATED_GRANTS_SCOPES_CHECK),
    info=aggregate("grant", invalid="invalid_body"),
)

Index(
    DELEGATED_GRANTS_PAGE_IDX,
    delegated_grants.c.zone_id,
    delegated_grants.c.created_at.desc(),
    delegated_grants.c.id.desc(),
)
# a list filtered by user, application or resource walks its page in order, never sorting them all
for _name, _column in (
    (DELEGATED_GRANTS_USER_IDX, delegated_grants.c.user_id),
    (DELEGATED_GRANTS_APPLICATION_IDX, delegated_grants.c.application_id),
    (DELEGATED_GRANTS_RESOURCE_IDX, delegated_grants.c.resource_id),
):
    Index(
        _name,
        delegated_grants.c.zone_id,
        _column,
        delegated_grants.c.created_at.desc(),
        delegated_grants.c.id.desc(),
    )

provider_grants = Table(
    "provider_grants",
    metadata,
    Column("id", Text, nullable=False),
    Column("zone_id", Text, nullable=False),
    Column("user_id", Text, nullable=False),
    Column("resource_id", Text, nullable=False),
    Column("provider_id", Text, nullable=False),
    Column("scopes", ARRAY(Text), nullable=False),
    Column("status", Text, nullable=False, server_default=text("'active'::text")),
    Column("access_token_ct", LargeBinary),
    Column("refresh_token_ct", LargeBinary),
    Column("expires_at", TS),
    Column("refreshed_at", TS),
    Column("refresh_token_version", Integer, nullable=False, server_default=text("0")),
    Column("created_at", TS, nullable=False, server_default=text("now()")),
    Column("updated_at", TS, nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("id", name=PROVIDER_GRANTS_PKEY),
    ForeignKeyConstraint(["zone_id"], ["zones.id"], name=PROVIDER_GRANTS_ZONE_ID_FKEY),
    ForeignKeyConstraint(
        ["zone_id", "resource_id"],
        ["resources.zone_id", "resources.id"],
        name=PROVIDER_GRANTS_RESOURCE_FKEY,
    ),
    ForeignKeyConstraint(
        ["zone_id", "provider_id"],
        ["providers.zone_id", "providers.id"],
        name=PROVIDER_GRANTS_PROVIDER_FKEY,
    ),
    CheckConstraint(_STATUS_RULE, name=PROVIDER_GRANTS_STATUS_CHECK),
    CheckConstraint("cardinality(scopes) > 0", name=PROVIDER_GRANTS_SCOPES_CHECK),
    info=aggregate("provider_grant", invalid="invalid_provider_grant"),
)

# at most one active grant per (zone, user, resource, provider): a new one overwrites it
Index(
    PROVIDER_GRANTS_ACTIVE_TUPLE_UIDX,
    provider_grants.c.zone_id,
    provider_grants.c.user_id,
    provider_grants.c.resource_id,
    provider_grants.c.provider_id,
    unique=True,
    postgresql_where=text("status = 'active'"),
)
