"""Core tables: admin tokens, zones, the event outbox and the admin audit trail.

Revision ID: 0001
Revises:
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# One statement per op.execute: asyncpg runs one statement per call, and splitting a script on
# ";" would cut the first plpgsql function body in pieces. Deployed already: change nothing here.
STATEMENTS = (
    """
    CREATE TABLE zones (
        id             TEXT PRIMARY KEY,
        name           TEXT NOT NULL CHECK (length(name) > 0),
        slug           TEXT NOT NULL CONSTRAINT zones_slug_key UNIQUE,
        dek_ciphertext BYTEA NOT NULL,
        kek_arn        TEXT,
        dcr_enabled    BOOLEAN NOT NULL DEFAULT false,
        created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
        updated_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
        archived_at    TIMESTAMPTZ
    )
    """,
    "CREATE INDEX zones_live_page_idx ON zones (created_at DESC, id DESC) WHERE archived_at IS NULL",
    """
    CREATE TABLE admin_tokens (
        id           TEXT PRIMARY KEY,
        name         TEXT NOT NULL,
        token_sha256 BYTEA NOT NULL CHECK (length(token_sha256) = 32),
        scope        TEXT NOT NULL CHECK (scope IN ('global', 'zone')),
        zone_id      TEXT REFERENCES zones (id),
        capability   TEXT NOT NULL DEFAULT 'write' CHECK (capability IN ('read', 'write', 'approve')),
        created_by   TEXT NOT NULL,
        created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
        last_used_at TIMESTAMPTZ,
        revoked_at   TIMESTAMPTZ,
        CONSTRAINT admin_tokens_scope_zone_check
            CHECK ((scope = 'global' AND zone_id IS NULL) OR (scope = 'zone' AND zone_id IS NOT NULL))
    )
    """,
    """
    CREATE UNIQUE INDEX admin_tokens_active_sha256_uidx ON admin_tokens (token_sha256)
        WHERE revoked_at IS NULL
    """,
    "CREATE INDEX admin_tokens_page_idx ON admin_tokens (created_at DESC, id DESC)",
    # txid is the writing transaction: the dispatcher publishes in (txid, seq) order, and only
    # rows whose transaction is older than every transaction still in progress
    """
    CREATE TABLE event_outbox (
        id            TEXT PRIMARY KEY,
        stream_name   TEXT NOT NULL,
        payload_json  JSONB NOT NULL,
        attempts      INTEGER NOT NULL DEFAULT 0,
        available_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
        locked_until  TIMESTAMPTZ,
        locked_by     TEXT,
        last_error    TEXT,
        dispatched_at TIMESTAMPTZ,
        request_id    TEXT,
        created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
        txid          XID8 NOT NULL DEFAULT pg_current_xact_id(),
        seq           BIGINT GENERATED ALWAYS AS IDENTITY,
        dead_at       TIMESTAMPTZ
    )
    """,
    "CREATE INDEX event_outbox_dispatch_ready ON event_outbox (available_at) WHERE dispatched_at IS NULL",
    "CREATE INDEX event_outbox_undispatched_age ON event_outbox (created_at) WHERE dispatched_at IS NULL",
    """
    CREATE INDEX event_outbox_stream_pending ON event_outbox (stream_name, txid, seq)
        WHERE dispatched_at IS NULL AND dead_at IS NULL
    """,
    """
    CREATE INDEX event_outbox_dead ON event_outbox (dead_at DESC, id DESC)
        WHERE dispatched_at IS NULL AND dead_at IS NOT NULL
    """,
    "CREATE INDEX event_outbox_dispatched ON event_outbox (dispatched_at) WHERE dispatched_at IS NOT NULL",
    # names this database to the streams' high-water marks: a mark left in Redis by another
    # database (a wiped or replaced one) must not hide this one's events as "already published"
    """
    CREATE TABLE outbox_origin (
        id     BOOLEAN PRIMARY KEY DEFAULT true CHECK (id),
        origin TEXT NOT NULL DEFAULT gen_random_uuid()::text
    )
    """,
    "INSERT INTO outbox_origin DEFAULT VALUES",
    """
    CREATE TABLE admin_audit_events (
        id           TEXT PRIMARY KEY,
        request_id   TEXT,
        actor_id     TEXT,
        actor_name   TEXT,
        actor_scope  TEXT,
        action       TEXT NOT NULL,
        method       TEXT,
        path         TEXT,
        zone_id      TEXT,
        entity_type  TEXT,
        entity_id    TEXT,
        status_code  INTEGER,
        payload_json JSONB NOT NULL DEFAULT '{}'::jsonb,
        occurred_at  TIMESTAMPTZ NOT NULL DEFAULT now()
    )
    """,
    "CREATE INDEX admin_audit_events_zone_idx ON admin_audit_events (zone_id, occurred_at DESC)",
)


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE admin_audit_events, outbox_origin, event_outbox, admin_tokens, zones")
