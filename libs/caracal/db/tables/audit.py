"""The admin_audit_events table: one row per admin mutation (CONTRACT.md §7.5)."""

from __future__ import annotations

from sqlalchemy import Column, Index, Integer, PrimaryKeyConstraint, Table, Text, text
from sqlalchemy.dialects.postgresql import JSONB

from caracal.db.tables import TS, aggregate, metadata

ADMIN_AUDIT_EVENTS_PKEY = "admin_audit_events_pkey"
ADMIN_AUDIT_EVENTS_ZONE_IDX = "admin_audit_events_zone_idx"

admin_audit_events = Table(
    "admin_audit_events",
    metadata,
    Column("id", Text, nullable=False),
    Column("request_id", Text),
    Column("actor_id", Text),
    Column("actor_name", Text),
    Column("actor_scope", Text),
    Column("action", Text, nullable=False),
    Column("method", Text),
    Column("path", Text),
    Column("zone_id", Text),
    Column("entity_type", Text),
    Column("entity_id", Text),
    Column("status_code", Integer),
    Column("payload_json", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("occurred_at", TS, nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("id", name=ADMIN_AUDIT_EVENTS_PKEY),
    info=aggregate("admin_audit_event"),
)

Index(ADMIN_AUDIT_EVENTS_ZONE_IDX, admin_audit_events.c.zone_id, admin_audit_events.c.occurred_at.desc())
