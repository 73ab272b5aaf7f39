"""The admin audit trail's chain: sealed rows and signed checkpoints (issue 10, docs/audit-chain.md).

Writers keep inserting rows as before; the new columns fill themselves (txid, seq) or stay NULL
until the sealer chains the row after its commit. Rows already present get sealed like new ones.

Revision ID: 0007
Revises: 0006
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

STATEMENTS: tuple[str, ...] = (
    """
    ALTER TABLE admin_audit_events
        ADD COLUMN txid xid8 NOT NULL DEFAULT pg_current_xact_id(),
        ADD COLUMN seq BIGINT GENERATED ALWAYS AS IDENTITY,
        ADD COLUMN chain_seq BIGINT,
        ADD COLUMN mac BYTEA,
        ADD COLUMN sealed_at TIMESTAMPTZ,
        ADD CONSTRAINT admin_audit_events_seal_check
            CHECK ((chain_seq IS NULL) = (mac IS NULL) AND (chain_seq IS NULL) = (sealed_at IS NULL))
    """,
    "DROP INDEX admin_audit_events_zone_idx",
    """
    CREATE INDEX admin_audit_events_zone_page_idx
        ON admin_audit_events (zone_id, occurred_at DESC, id DESC)
    """,
    "CREATE INDEX admin_audit_events_page_idx ON admin_audit_events (occurred_at DESC, id DESC)",
    """
    CREATE INDEX admin_audit_events_unsealed_idx ON admin_audit_events (txid, seq)
        WHERE chain_seq IS NULL
    """,
    """
    CREATE UNIQUE INDEX admin_audit_events_chain_seq_key ON admin_audit_events (chain_seq)
        WHERE chain_seq IS NOT NULL
    """,
    """
    CREATE TABLE admin_audit_checkpoints (
        chain_seq  BIGINT NOT NULL CONSTRAINT admin_audit_checkpoints_pkey PRIMARY KEY,
        mac        BYTEA NOT NULL,
        created_at TIMESTAMPTZ NOT NULL,
        signature  BYTEA NOT NULL
    )
    """,
)


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    pass
