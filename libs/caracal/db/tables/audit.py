"""The admin audit trail: admin_audit_events (CONTRACT.md §7.5) with its chain, and its checkpoints."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Identity,
    Index,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    Table,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from caracal.db.tables import TS, Xid8, aggregate, metadata

ADMIN_AUDIT_EVENTS_PKEY = "admin_audit_events_pkey"
ADMIN_AUDIT_EVENTS_SEAL_CHECK = "admin_audit_events_seal_check"
ADMIN_AUDIT_EVENTS_ZONE_PAGE_IDX = "admin_audit_events_zone_page_idx"
ADMIN_AUDIT_EVENTS_PAGE_IDX = "admin_audit_events_page_idx"
ADMIN_AUDIT_EVENTS_UNSEALED_IDX = "admin_audit_events_unsealed_idx"
ADMIN_AUDIT_EVENTS_CHAIN_SEQ_KEY = "admin_audit_events_chain_seq_key"
ADMIN_AUDIT_CHECKPOINTS_PKEY = "admin_audit_checkpoints_pkey"
ADMIN_AUDIT_CHECKPOINTS_ROTATION_CHECK = "admin_audit_checkpoints_rotation_check"

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
    # the writing transaction and the order within it: the sealer chains rows in (txid, seq) order,
    # only once their transaction is older than every transaction still running (as the outbox)
    Column("txid", Xid8(), nullable=False, server_default=text("pg_current_xact_id()")),
    Column("seq", BigInteger, Identity(always=True), nullable=False),
    # set by the sealer after commit (docs/audit-chain.md): position, HMAC link, when
    Column("chain_seq", BigInteger),
    Column("mac", LargeBinary),
    Column("sealed_at", TS),
    PrimaryKeyConstraint("id", name=ADMIN_AUDIT_EVENTS_PKEY),
    CheckConstraint(
        "(chain_seq IS NULL) = (mac IS NULL) AND (chain_seq IS NULL) = (sealed_at IS NULL)",
        name=ADMIN_AUDIT_EVENTS_SEAL_CHECK,
    ),
    info=aggregate("admin_audit_event"),
)

_events = admin_audit_events.c
Index(ADMIN_AUDIT_EVENTS_ZONE_PAGE_IDX, _events.zone_id, _events.occurred_at.desc(), _events.id.desc())
Index(ADMIN_AUDIT_EVENTS_PAGE_IDX, _events.occurred_at.desc(), _events.id.desc())
# the sealer's queue: only unsealed rows, so it stays small whatever the trail's size
Index(
    ADMIN_AUDIT_EVENTS_UNSEALED_IDX, _events.txid, _events.seq, postgresql_where=_events.chain_seq.is_(None)
)
# partial: an insert (chain_seq NULL) adds no entry; one position holds one row
Index(
    ADMIN_AUDIT_EVENTS_CHAIN_SEQ_KEY,
    _events.chain_seq,
    unique=True,
    postgresql_where=_events.chain_seq.is_not(None),
)

# Signed snapshots of the chain head, written by the sealer now and then: a tail cut off the chain
# (its newest rows deleted) still contradicts the last checkpoint.
admin_audit_checkpoints = Table(
    "admin_audit_checkpoints",
    metadata,
    Column("chain_seq", BigInteger, nullable=False, autoincrement=False),
    Column("mac", LargeBinary, nullable=False),
    Column("created_at", TS, nullable=False),
    Column("signature", LargeBinary, nullable=False),
    # the key signing this checkpoint and sealing the rows after it; a rotation also names the key
    # it takes over from, with that key's signature (docs/audit-chain.md, "Key rotation")
    Column("key_id", Text, nullable=False, server_default=text("'default'")),
    Column("previous_key_id", Text),
    Column("previous_signature", LargeBinary),
    PrimaryKeyConstraint("chain_seq", name=ADMIN_AUDIT_CHECKPOINTS_PKEY),
    CheckConstraint(
        "(previous_key_id IS NULL) = (previous_signature IS NULL)",
        name=ADMIN_AUDIT_CHECKPOINTS_ROTATION_CHECK,
    ),
    info=aggregate("admin_audit_checkpoint"),
)
