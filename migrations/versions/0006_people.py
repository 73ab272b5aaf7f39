"""Step-up challenges, teams, invitations and the decision-audit table (issue 10).

`step_up_challenges` (the STS's) and `audit_events` (the audit ingester's, range-partitioned by
`occurred_at`) are created only where missing, exactly as CONTRACT.md §9 lists them, with Postgres'
default names; teams and invitations are ours (CONTRACT.md §7.4 columns, named constraints).

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

STATEMENTS: tuple[str, ...] = (
    # the STS's table (CONTRACT.md §9): Postgres' default names, created only where it is missing
    """
    CREATE TABLE IF NOT EXISTS step_up_challenges (
        id                    TEXT PRIMARY KEY,
        zone_id               TEXT NOT NULL REFERENCES zones (id) ON DELETE CASCADE,
        session_id            TEXT,
        challenge_type        TEXT NOT NULL
                                  CHECK (challenge_type IN ('human_approval', 'mfa', 'software_attestation')),
        metadata_json         JSONB NOT NULL DEFAULT '{}',
        created_at            TIMESTAMPTZ NOT NULL DEFAULT now(),
        expires_at            TIMESTAMPTZ NOT NULL,
        satisfied_at          TIMESTAMPTZ,
        challenge_secret_hash BYTEA,
        principal_id          TEXT,
        resource_set_hash     BYTEA,
        consumed_at           TIMESTAMPTZ,
        approver_subject_id   TEXT
    )
    """,
    "CREATE INDEX IF NOT EXISTS step_up_challenges_session_id_idx ON step_up_challenges (session_id)",
    """
    CREATE UNIQUE INDEX IF NOT EXISTS step_up_challenges_id_idx ON step_up_challenges (id)
        WHERE consumed_at IS NOT NULL
    """,
    """
    CREATE INDEX IF NOT EXISTS step_up_challenges_zone_id_principal_id_idx
        ON step_up_challenges (zone_id, principal_id) WHERE consumed_at IS NULL
    """,
    """
    CREATE INDEX IF NOT EXISTS step_up_challenges_approver_subject_id_idx
        ON step_up_challenges (approver_subject_id) WHERE approver_subject_id IS NOT NULL
    """,
    # the audit ingester's table (CONTRACT.md §9); it adds monthly partitions beside the default one
    """
    CREATE TABLE IF NOT EXISTS audit_events (
        id                        TEXT NOT NULL,
        zone_id                   TEXT NOT NULL,
        event_type                TEXT NOT NULL,
        request_id                TEXT,
        decision                  TEXT,
        policy_set_id             TEXT,
        policy_set_version_id     TEXT,
        manifest_sha              TEXT,
        evaluation_status         TEXT,
        determining_policies_json JSONB,
        diagnostics_json          JSONB,
        metadata_json             JSONB,
        occurred_at               TIMESTAMPTZ NOT NULL,
        ingested_at               TIMESTAMPTZ NOT NULL DEFAULT now(),
        content_sha256            TEXT,
        prev_content_sha256       TEXT,
        chain_hmac                TEXT,
        chain_seq                 BIGINT,
        ingest_signature          TEXT,
        PRIMARY KEY (id, occurred_at)
    ) PARTITION BY RANGE (occurred_at)
    """,
    "CREATE TABLE IF NOT EXISTS audit_events_default PARTITION OF audit_events DEFAULT",
    """
    CREATE INDEX IF NOT EXISTS audit_events_zone_id_occurred_at_idx
        ON audit_events (zone_id, occurred_at DESC)
    """,
    "CREATE INDEX IF NOT EXISTS audit_events_request_id_idx ON audit_events (request_id) WHERE request_id IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS audit_events_zone_id_chain_seq_idx ON audit_events (zone_id, chain_seq DESC)",
    # ours (CONTRACT.md §7.4 columns; named constraints)
    """
    CREATE TABLE teams (
        id           TEXT NOT NULL CONSTRAINT teams_pkey PRIMARY KEY,
        zone_id      TEXT NOT NULL CONSTRAINT teams_zone_id_fkey REFERENCES zones (id),
        name         TEXT NOT NULL CONSTRAINT teams_name_check CHECK (length(name) > 0),
        members_json JSONB NOT NULL DEFAULT '[]',
        created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
        updated_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
        CONSTRAINT teams_zone_id_name_key UNIQUE (zone_id, name)
    )
    """,
    "CREATE INDEX teams_page_idx ON teams (zone_id, created_at DESC, id DESC)",
    """
    CREATE TABLE invitations (
        id          TEXT NOT NULL CONSTRAINT invitations_pkey PRIMARY KEY,
        zone_id     TEXT NOT NULL CONSTRAINT invitations_zone_id_fkey REFERENCES zones (id),
        email       TEXT NOT NULL,
        role        TEXT NOT NULL,
        invited_by  TEXT NOT NULL,
        accepted_at TIMESTAMPTZ,
        expires_at  TIMESTAMPTZ NOT NULL,
        created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
        CONSTRAINT invitations_fields_check
            CHECK (length(email) > 0 AND length(role) > 0 AND length(invited_by) > 0)
    )
    """,
    "CREATE INDEX invitations_page_idx ON invitations (zone_id, created_at DESC, id DESC)",
)


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE invitations, teams")
