"""The audit_events table (decision audit): the audit ingester writes it, the API reads it (CONTRACT.md §9).

Created exactly as the original's migrations leave it: partitioned by range of `occurred_at` with a
DEFAULT partition (the ingester adds monthly ones), Postgres' default names, only if missing. The
partitions are the ingester's; only the partitioned table is defined here.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, PrimaryKeyConstraint, Table, Text, text
from sqlalchemy.dialects.postgresql import JSONB

from caracal.db.tables import TS, aggregate, metadata

AUDIT_EVENTS_PKEY = "audit_events_pkey"
AUDIT_EVENTS_ZONE_IDX = "audit_events_zone_id_occurred_at_idx"
AUDIT_EVENTS_REQUEST_IDX = "audit_events_request_id_idx"
AUDIT_EVENTS_CHAIN_IDX = "audit_events_zone_id_chain_seq_idx"

audit_events = Table(
    "audit_events",
    metadata,
    Column("id", Text, nullable=False),
    Column("zone_id", Text, nullable=False),
    Column("event_type", Text, nullable=False),
    Column("request_id", Text),
    Column("decision", Text),
    Column("policy_set_id", Text),
    Column("policy_set_version_id", Text),
    Column("manifest_sha", Text),
    Column("evaluation_status", Text),
    Column("determining_policies_json", JSONB),
    Column("diagnostics_json", JSONB),
    Column("metadata_json", JSONB),
    Column("occurred_at", TS, nullable=False),
    Column("ingested_at", TS, nullable=False, server_default=text("now()")),
    Column("content_sha256", Text),
    Column("prev_content_sha256", Text),
    Column("chain_hmac", Text),
    Column("chain_seq", BigInteger),
    Column("ingest_signature", Text),
    PrimaryKeyConstraint("id", "occurred_at", name=AUDIT_EVENTS_PKEY),
    postgresql_partition_by="RANGE (occurred_at)",
    info=aggregate("audit_event"),
)

Index(AUDIT_EVENTS_ZONE_IDX, audit_events.c.zone_id, audit_events.c.occurred_at.desc())
Index(
    AUDIT_EVENTS_REQUEST_IDX,
    audit_events.c.request_id,
    postgresql_where=text("request_id IS NOT NULL"),
)
Index(AUDIT_EVENTS_CHAIN_IDX, audit_events.c.zone_id, audit_events.c.chain_seq.desc())
