"""The providers table (credential providers); the STS reads their public config and sealed secrets."""

from __future__ import annotations

from sqlalchemy import (
    CheckConstraint,
    Column,
    ForeignKeyConstraint,
    Index,
    LargeBinary,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from caracal.db.tables import TS, aggregate, metadata

PROVIDER_KINDS = (
    "none",
    "caracal_mandate",
    "oauth2_authorization_code",
    "oauth2_client_credentials",
    "api_key",
    "bearer_token",
)

PROVIDERS_PKEY = "providers_pkey"
PROVIDERS_ZONE_ID_FKEY = "providers_zone_id_fkey"
PROVIDERS_ZONE_ID_ID_KEY = "providers_zone_id_id_key"
PROVIDERS_NAME_CHECK = "providers_name_check"
PROVIDERS_KIND_CHECK = "providers_provider_kind_check"
PROVIDERS_SECRET_NONCE_CHECK = "providers_secret_config_nonce_check"
PROVIDERS_ZONE_IDENTIFIER_ACTIVE_UIDX = "providers_zone_identifier_active_uidx"  # CONTRACT.md §4.4
PROVIDERS_LIVE_PAGE_IDX = "providers_live_page_idx"

providers = Table(
    "providers",
    metadata,
    Column("id", Text, nullable=False),
    Column("zone_id", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("identifier", Text, nullable=False),
    Column("provider_kind", Text, nullable=False),
    Column("config_json", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("secret_config_ct", LargeBinary),
    Column("secret_config_nonce", LargeBinary),
    Column("secret_config_keys", ARRAY(Text), nullable=False, server_default=text("'{}'::text[]")),
    Column("created_at", TS, nullable=False, server_default=text("now()")),
    Column("updated_at", TS, nullable=False, server_default=text("now()")),
    Column("archived_at", TS),
    PrimaryKeyConstraint("id", name=PROVIDERS_PKEY),
    ForeignKeyConstraint(["zone_id"], ["zones.id"], name=PROVIDERS_ZONE_ID_FKEY),
    UniqueConstraint("zone_id", "id", name=PROVIDERS_ZONE_ID_ID_KEY),
    CheckConstraint("length(name) > 0", name=PROVIDERS_NAME_CHECK),
    CheckConstraint(
        "provider_kind IN (" + ", ".join(f"'{kind}'" for kind in PROVIDER_KINDS) + ")",
        name=PROVIDERS_KIND_CHECK,
    ),
    CheckConstraint(
        "(secret_config_ct IS NULL) = (secret_config_nonce IS NULL)"
        " AND (secret_config_nonce IS NULL OR length(secret_config_nonce) = 12)",
        name=PROVIDERS_SECRET_NONCE_CHECK,
    ),
    info=aggregate("provider"),
)

Index(
    PROVIDERS_ZONE_IDENTIFIER_ACTIVE_UIDX,
    providers.c.zone_id,
    providers.c.identifier,
    unique=True,
    postgresql_where=providers.c.archived_at.is_(None),
)
Index(
    PROVIDERS_LIVE_PAGE_IDX,
    providers.c.zone_id,
    providers.c.created_at.desc(),
    providers.c.id.desc(),
    postgresql_where=providers.c.archived_at.is_(None),
)
