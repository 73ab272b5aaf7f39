"""The event_outbox table (CONTRACT.md §5.1 plus the dispatcher's columns) and outbox_origin."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Identity,
    Index,
    Integer,
    PrimaryKeyConstraint,
    Table,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from caracal.db.tables import TS, Xid8, aggregate, metadata

EVENT_OUTBOX_PKEY = "event_outbox_pkey"
EVENT_OUTBOX_UNDISPATCHED_AGE = "event_outbox_undispatched_age"
EVENT_OUTBOX_STREAM_PENDING = "event_outbox_stream_pending"
EVENT_OUTBOX_DEAD = "event_outbox_dead"
EVENT_OUTBOX_DISPATCHED = "event_outbox_dispatched"
OUTBOX_ORIGIN_PKEY = "outbox_origin_pkey"
OUTBOX_ORIGIN_ID_CHECK = "outbox_origin_id_check"

event_outbox = Table(
    "event_outbox",
    metadata,
    Column("id", Text, nullable=False),
    Column("stream_name", Text, nullable=False),
    Column("payload_json", JSONB, nullable=False),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("available_at", TS, nullable=False, server_default=text("now()")),
    Column("locked_until", TS),
    Column("locked_by", Text),
    Column("last_error", Text),
    Column("dispatched_at", TS),
    Column("request_id", Text),
    Column("created_at", TS, nullable=False, server_default=text("now()")),
    # the writing transaction: the dispatcher publishes in (txid, seq) order, and only rows whose
    # transaction is older than every transaction still in progress
    Column("txid", Xid8(), nullable=False, server_default=text("pg_current_xact_id()")),
    Column("seq", BigInteger, Identity(always=True), nullable=False),
    Column("dead_at", TS),
    Column("traceparent", Text),  # the writer's W3C trace context when it was traced (0008)
    PrimaryKeyConstraint("id", name=EVENT_OUTBOX_PKEY),
    info=aggregate("outbox_event"),
)

_undispatched = event_outbox.c.dispatched_at.is_(None)
# (0002 dropped event_outbox_dispatch_ready: no plan used it, and every write maintained it)
Index(EVENT_OUTBOX_UNDISPATCHED_AGE, event_outbox.c.created_at, postgresql_where=_undispatched)
# the dispatcher's next batch of a stream, in publication order
Index(
    EVENT_OUTBOX_STREAM_PENDING,
    event_outbox.c.stream_name,
    event_outbox.c.txid,
    event_outbox.c.seq,
    postgresql_where=_undispatched & event_outbox.c.dead_at.is_(None),
)
Index(
    EVENT_OUTBOX_DEAD,
    event_outbox.c.dead_at.desc(),
    event_outbox.c.id.desc(),
    postgresql_where=_undispatched & event_outbox.c.dead_at.is_not(None),
)
Index(
    EVENT_OUTBOX_DISPATCHED,
    event_outbox.c.dispatched_at,
    postgresql_where=event_outbox.c.dispatched_at.is_not(None),
)

# One row naming this database to the streams' high-water marks: a mark left in Redis by another
# database (a wiped or replaced one) must not hide this one's events as "already published".
outbox_origin = Table(
    "outbox_origin",
    metadata,
    Column("id", Boolean, nullable=False, server_default=text("true")),
    Column("origin", Text, nullable=False, server_default=text("gen_random_uuid()::text")),
    PrimaryKeyConstraint("id", name=OUTBOX_ORIGIN_PKEY),
    CheckConstraint("id", name=OUTBOX_ORIGIN_ID_CHECK),
    info=aggregate("outbox_origin"),
)
