"""The idempotency_keys table: the first response of each keyed POST, per admin token (0009)."""

from __future__ import annotations

from sqlalchemy import Column, Index, Integer, LargeBinary, PrimaryKeyConstraint, Table, Text, text

from caracal.db.tables import TS, aggregate, metadata

IDEMPOTENCY_KEYS_PKEY = "idempotency_keys_pkey"
IDEMPOTENCY_KEYS_CREATED_AT_IDX = "idempotency_keys_created_at_idx"

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("token_id", Text, nullable=False),
    Column("key", Text, nullable=False),
    Column("fingerprint", LargeBinary, nullable=False),
    Column("status", Integer, nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("content_type", Text, nullable=False),
    Column("created_at", TS, nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("token_id", "key", name=IDEMPOTENCY_KEYS_PKEY),
    info=aggregate("idempotency_key"),
)

Index(IDEMPOTENCY_KEYS_CREATED_AT_IDX, idempotency_keys.c.created_at)
