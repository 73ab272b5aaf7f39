"""The zones table (tenants), as migration 0001 creates it; the Gateway and STS read it too."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    Index,
    LargeBinary,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
    text,
)

from caracal.db.tables import TS, aggregate, metadata

ZONES_PKEY = "zones_pkey"
ZONES_NAME_CHECK = "zones_name_check"
ZONES_SLUG_KEY = "zones_slug_key"  # CONTRACT.md §7.4 names it
ZONES_LIVE_PAGE_IDX = "zones_live_page_idx"

zones = Table(
    "zones",
    metadata,
    Column("id", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("slug", Text, nullable=False),
    Column("dek_ciphertext", LargeBinary, nullable=False),
    Column("kek_arn", Text),
    Column("dcr_enabled", Boolean, nullable=False, server_default=text("false")),
    Column("created_at", TS, nullable=False, server_default=text("now()")),
    Column("updated_at", TS, nullable=False, server_default=text("now()")),
    Column("archived_at", TS),
    PrimaryKeyConstraint("id", name=ZONES_PKEY),
    CheckConstraint("length(name) > 0", name=ZONES_NAME_CHECK),
    UniqueConstraint("slug", name=ZONES_SLUG_KEY),
    info=aggregate("zone"),
)

# the live-zone list pages newest first
Index(
    ZONES_LIVE_PAGE_IDX,
    zones.c.created_at.desc(),
    zones.c.id.desc(),
    postgresql_where=zones.c.archived_at.is_(None),
)
