"""The applications table (OAuth clients, managed and DCR); the STS reads it and verifies their secrets."""

from __future__ import annotations

from sqlalchemy import (
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

APPLICATIONS_PKEY = "applications_pkey"
APPLICATIONS_ZONE_ID_FKEY = "applications_zone_id_fkey"
APPLICATIONS_ZONE_ID_ID_KEY = "applications_zone_id_id_key"
APPLICATIONS_NAME_CHECK = "applications_name_check"
APPLICATIONS_REGISTRATION_METHOD_CHECK = "applications_registration_method_check"
APPLICATIONS_DCR_EXPIRES_CHECK = "applications_dcr_expires_check"
APPLICATIONS_LIVE_PAGE_IDX = "applications_live_page_idx"
APPLICATIONS_LIVE_DCR_IDX = "applications_live_dcr_idx"
APPLICATIONS_DCR_EXPIRY_IDX = "applications_dcr_expiry_idx"

applications = Table(
    "applications",
    metadata,
    Column("id", Text, nullable=False),
    Column("zone_id", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("registration_method", Text, nullable=False),
    Column("credential_type", Text, nullable=False, server_default=text("'token'::text")),
    Column("client_secret_hash", Text),
    Column("traits", ARRAY(Text), nullable=False, server_default=text("'{}'::text[]")),
    Column("expires_at", TS),
    Column("archived_at", TS),
    Column("created_at", TS, nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("id", name=APPLICATIONS_PKEY),
    ForeignKeyConstraint(["zone_id"], ["zones.id"], name=APPLICATIONS_ZONE_ID_FKEY),
    UniqueConstraint("zone_id", "id", name=APPLICATIONS_ZONE_ID_ID_KEY),
    CheckConstraint("length(name) > 0", name=APPLICATIONS_NAME_CHECK),
    CheckConstraint("registration_method IN ('managed', 'dcr')", name=APPLICATIONS_REGISTRATION_METHOD_CHECK),
    CheckConstraint(
        "registration_method <> 'dcr' OR expires_at IS NOT NULL", name=APPLICATIONS_DCR_EXPIRES_CHECK
    ),
    info=aggregate("application"),
)

# a zone's live applications page newest first
Index(
    APPLICATIONS_LIVE_PAGE_IDX,
    applications.c.zone_id,
    applications.c.created_at.desc(),
    applications.c.id.desc(),
    postgresql_where=applications.c.archived_at.is_(None),
)
# the live-DCR count (cap, dcr-status) and the DCR garbage collector, by expiry
Index(
    APPLICATIONS_LIVE_DCR_IDX,
    applications.c.zone_id,
    applications.c.expires_at,
    postgresql_where=text("registration_method = 'dcr' AND archived_at IS NULL"),
)
# the reaper's DCR collector, across zones by expiry (migration 0005)
Index(
    APPLICATIONS_DCR_EXPIRY_IDX,
    applications.c.expires_at,
    postgresql_where=text("registration_method = 'dcr' AND archived_at IS NULL"),
)
