"""Idempotency-Key (issue 12): the first response of a keyed POST, kept 24 h per admin token.

Written in the transaction of the POST's own mutation, so a key exists exactly when its mutation
committed. `body` is sealed under a key derived from the caller's bearer token (docs: README,
"Retries and Idempotency-Key"): a reader of the database cannot read the secrets a create returned.

Revision ID: 0009
Revises: 0008
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

STATEMENTS: tuple[str, ...] = (
    """
    CREATE TABLE idempotency_keys (
        token_id     TEXT NOT NULL,
        key          TEXT NOT NULL,
        fingerprint  BYTEA NOT NULL,
        status       INTEGER NOT NULL,
        body         BYTEA NOT NULL,
        content_type TEXT NOT NULL,
        created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
        CONSTRAINT idempotency_keys_pkey PRIMARY KEY (token_id, key)
    )
    """,
    "CREATE INDEX idempotency_keys_created_at_idx ON idempotency_keys (created_at)",
)


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    pass
