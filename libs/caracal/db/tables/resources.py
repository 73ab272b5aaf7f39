"""The resources table, and the Gateway's bindings of resource identifiers to applications.

The Gateway reads `gateway_resource_bindings` and re-reads it whenever the single row of
`gateway_binding_revision` changes version (CONTRACT.md §5.5), so every binding change bumps it.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    ForeignKeyConstraint,
    Index,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY

from caracal.db.tables import TS, aggregate, metadata

RESOURCES_PKEY = "resources_pkey"
RESOURCES_ZONE_ID_FKEY = "resources_zone_id_fkey"
RESOURCES_ZONE_ID_ID_KEY = "resources_zone_id_id_key"
RESOURCES_ZONE_ID_IDENTIFIER_KEY = "resources_zone_id_identifier_key"  # CONTRACT.md §4.3 names it
RESOURCES_CREDENTIAL_PROVIDER_FKEY = "resources_credential_provider_fkey"
RESOURCES_NAME_CHECK = "resources_name_check"
RESOURCES_SCOPES_CHECK = "resources_scopes_check"
RESOURCES_LIVE_PAGE_IDX = "resources_live_page_idx"
RESOURCES_PROVIDER_IDX = "resources_provider_idx"

GATEWAY_RESOURCE_BINDINGS_PKEY = "gateway_resource_bindings_pkey"
GATEWAY_RESOURCE_BINDINGS_ZONE_ID_FKEY = "gateway_resource_bindings_zone_id_fkey"
GATEWAY_RESOURCE_BINDINGS_APPLICATION_FKEY = "gateway_resource_bindings_application_fkey"
GATEWAY_BINDING_REVISION_PKEY = "gateway_binding_revision_pkey"
GATEWAY_BINDING_REVISION_ID_CHECK = "gateway_binding_revision_id_check"

resources = Table(
    "resources",
    metadata,
    Column("id", Text, nullable=False),
    Column("zone_id", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("identifier", Text, nullable=False),
    Column("upstream_url", Text),
    Column("credential_provider_id", Text, nullable=False),
    Column("scopes", ARRAY(Text), nullable=False),
    Column("created_at", TS, nullable=False, server_default=text("now()")),
    Column("updated_at", TS, nullable=False, server_default=text("now()")),
    Column("archived_at", TS),
    PrimaryKeyConstraint("id", name=RESOURCES_PKEY),
    ForeignKeyConstraint(["zone_id"], ["zones.id"], name=RESOURCES_ZONE_ID_FKEY),
    UniqueConstraint("zone_id", "id", name=RESOURCES_ZONE_ID_ID_KEY),
    UniqueConstraint("zone_id", "identifier", name=RESOURCES_ZONE_ID_IDENTIFIER_KEY),
    ForeignKeyConstraint(
        ["zone_id", "credential_provider_id"],
        ["providers.zone_id", "providers.id"],
        name=RESOURCES_CREDENTIAL_PROVIDER_FKEY,
    ),
    CheckConstraint("length(name) > 0", name=RESOURCES_NAME_CHECK),
    CheckConstraint("cardinality(scopes) > 0", name=RESOURCES_SCOPES_CHECK),
    info=aggregate("resource"),
)

Index(
    RESOURCES_LIVE_PAGE_IDX,
    resources.c.zone_id,
    resources.c.created_at.desc(),
    resources.c.id.desc(),
    postgresql_where=resources.c.archived_at.is_(None),
)
# grants filtered by provider join resources on their provider
Index(RESOURCES_PROVIDER_IDX, resources.c.zone_id, resources.c.credential_provider_id)

gateway_resource_bindings = Table(
    "gateway_resource_bindings",
    metadata,
    Column("zone_id", Text, nullable=False),
    Column("resource_identifier", Text, nullable=False),
    Column("application_id", Text, nullable=False),
    Column("created_at", TS, nullable=False, server_default=text("now()")),
    Column("updated_at", TS, nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("zone_id", "resource_identifier", name=GATEWAY_RESOURCE_BINDINGS_PKEY),
    ForeignKeyConstraint(["zone_id"], ["zones.id"], name=GATEWAY_RESOURCE_BINDINGS_ZONE_ID_FKEY),
    ForeignKeyConstraint(
        ["zone_id", "application_id"],
        ["applications.zone_id", "applications.id"],
        name=GATEWAY_RESOURCE_BINDINGS_APPLICATION_FKEY,
    ),
    info=aggregate("gateway_binding", invalid="invalid_resource"),
)

gateway_binding_revision = Table(
    "gateway_binding_revision",
    metadata,
    Column("id", Boolean, nullable=False, server_default=text("true")),
    Column("version", BigInteger, nullable=False, server_default=text("0")),
    Column("updated_at", TS, nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("id", name=GATEWAY_BINDING_REVISION_PKEY),
    CheckConstraint("id", name=GATEWAY_BINDING_REVISION_ID_CHECK),
    info=aggregate("gateway_binding_revision", invalid="invalid_resource"),
)
