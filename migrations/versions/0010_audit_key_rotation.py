"""AUDIT_HMAC_KEY rotation (issue 12, docs/audit-chain.md "Key rotation"): each checkpoint names its key.

`key_id` is the id (in AUDIT_HMAC_KEY) of the key that signs the checkpoint and seals the rows after
it; checkpoints written before this revision were made with the one key there was, which a bare
AUDIT_HMAC_KEY calls `default`. A rotation checkpoint also names the key it hands over from and
carries that key's signature, so the chain's switch of key is vouched for by both keys.

Revision ID: 0010
Revises: 0009
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

STATEMENTS: tuple[str, ...] = (
    """
    ALTER TABLE admin_audit_checkpoints
        ADD COLUMN key_id TEXT NOT NULL DEFAULT 'default',
        ADD COLUMN previous_key_id TEXT,
        ADD COLUMN previous_signature BYTEA,
        ADD CONSTRAINT admin_audit_checkpoints_rotation_check
            CHECK ((previous_key_id IS NULL) = (previous_signature IS NULL))
    """,
)


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    pass
