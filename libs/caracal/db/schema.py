"""Table definitions for queries; the schema itself is built only by the Alembic migrations."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData()

TS = DateTime(timezone=True)

admin_tokens = Table(
    "admin_tokens",
    metadata,
    Column("id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("token_sha256", LargeBinary, nullable=False),
    Column("scope", Text, nullable=False),
    Column("zone_id", Text),
    Column("capability", Text, nullable=False),
    Column("created_by", Text, nullable=False),
    Column("created_at", TS, nullable=False),
    Column("last_used_at", TS),
    Column("revoked_at", TS),
)

zones = Table(
    "zones",
    metadata,
    Column("id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("slug", Text, nullable=False),
    Column("dek_ciphertext", LargeBinary, nullable=False),
    Column("kek_arn", Text),
    Column("dcr_enabled", Boolean, nullable=False),
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
    Column("archived_at", TS),
)

event_outbox = Table(
    "event_outbox",
    metadata,
    Column("id", Text, primary_key=True),
    Column("stream_name", Text, nullable=False),
    Column("payload_json", JSONB, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("available_at", TS, nullable=False),
    Column("locked_until", TS),
    Column("locked_by", Text),
    Column("last_error", Text),
    Column("dispatched_at", TS),
    Column("request_id", Text),
    Column("created_at", TS, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("dead_at", TS),
)

admin_audit_events = Table(
    "admin_audit_events",
    metadata,
    Column("id", Text, primary_key=True),
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
    Column("payload_json", JSONB, nullable=False),
    Column("occurred_at", TS, nullable=False),
)
