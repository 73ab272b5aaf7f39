"""The sessions table, which the STS writes; the API reads it and revokes sessions (CONTRACT.md §9).

Created exactly as the original's migrations leave it (Postgres' default constraint and index
names), so an STS pointed at our database finds the table it expects; created only if missing.
The page and parent indexes are ours (migration 0005).
"""

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
from sqlalchemy.dialects.postgresql import JSONB

from caracal.db.tables import TS, aggregate, metadata

SESSIONS_PKEY = "sessions_pkey"
SESSIONS_ZONE_ID_ID_KEY = "sessions_zone_id_id_key"
SESSIONS_ZONE_ID_FKEY = "sessions_zone_id_fkey"
SESSIONS_PARENT_ID_FKEY = "sessions_parent_id_fkey"
SESSIONS_SESSION_TYPE_CHECK = "sessions_session_type_check"
SESSIONS_STATUS_CHECK = "sessions_status_check"
SESSIONS_SUBJECT_IDX = "sessions_zone_id_subject_id_status_idx"
SESSIONS_ACTIVE_EXPIRY_IDX = "sessions_expires_at_idx"
SESSIONS_ZONE_PAGE_IDX = "sessions_zone_page_idx"
SESSIONS_ZONE_SUBJECT_PAGE_IDX = "sessions_zone_subject_page_idx"
SESSIONS_PARENT_IDX = "sessions_parent_idx"

sessions = Table(
    "sessions",
    metadata,
    Column("id", Text, nullable=False),
    Column("zone_id", Text, nullable=False),
    Column("session_type", Text, nullable=False),
    Column("subject_id", Text),
    Column("parent_id", Text),
    Column("status", Text, nullable=False, server_default=text("'active'::text")),
    Column("expires_at", TS, nullable=False),
    Column("authenticated_at", TS, nullable=False),
    Column("claims_json", JSONB),
    Column("created_at", TS, nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("id", name=SESSIONS_PKEY),
    UniqueConstraint("zone_id", "id", name=SESSIONS_ZONE_ID_ID_KEY),
    ForeignKeyConstraint(["zone_id"], ["zones.id"], name=SESSIONS_ZONE_ID_FKEY),
    ForeignKeyConstraint(["parent_id"], ["sessions.id"], name=SESSIONS_PARENT_ID_FKEY),
    CheckConstraint("session_type IN ('user', 'application')", name=SESSIONS_SESSION_TYPE_CHECK),
    CheckConstraint("status IN ('active', 'revoked', 'expired')", name=SESSIONS_STATUS_CHECK),
    info=aggregate("session"),
)

Index(SESSIONS_SUBJECT_IDX, sessions.c.zone_id, sessions.c.subject_id, sessions.c.status)
Index(SESSIONS_ACTIVE_EXPIRY_IDX, sessions.c.expires_at, postgresql_where=text("status = 'active'"))

# ours (0005): the zone's page and a subject's page newest first; descendants of a revoked session
Index(SESSIONS_ZONE_PAGE_IDX, sessions.c.zone_id, sessions.c.created_at.desc(), sessions.c.id.desc())
Index(
    SESSIONS_ZONE_SUBJECT_PAGE_IDX,
    sessions.c.zone_id,
    sessions.c.subject_id,
    sessions.c.created_at.desc(),
    sessions.c.id.desc(),
)
Index(SESSIONS_PARENT_IDX, sessions.c.parent_id, postgresql_where=sessions.c.parent_id.is_not(None))
