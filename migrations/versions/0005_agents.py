"""The coordinator's agent_sessions and delegation_edges, created only where missing (issue 10); the
indexes the sessions list, the revocation walks and the reapers need.

Both tables belong to the coordinator (CONTRACT.md §9): created exactly as the original's migrations
leave them (Postgres' default constraint names), only when they do not exist yet. The indexes after
them are ours (DESIGN.md: "add columns and indexes freely").

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

STATEMENTS: tuple[str, ...] = (
    """
    CREATE TABLE IF NOT EXISTS agent_sessions (
        id                    TEXT PRIMARY KEY,
        zone_id               TEXT NOT NULL,
        application_id        TEXT NOT NULL,
        parent_id             TEXT,
        subject_session_id    TEXT NOT NULL,
        status                TEXT NOT NULL DEFAULT 'active'
                                  CHECK (status IN ('active', 'suspended', 'terminated', 'expired')),
        depth                 INTEGER NOT NULL DEFAULT 0,
        capabilities          TEXT[] NOT NULL DEFAULT '{}',
        max_children          INTEGER NOT NULL DEFAULT 10,
        child_count           INTEGER NOT NULL DEFAULT 0,
        spawned_at            TIMESTAMPTZ NOT NULL DEFAULT now(),
        last_active_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
        terminated_at         TIMESTAMPTZ,
        ttl_seconds           INTEGER NOT NULL DEFAULT 3600,
        metadata_json         JSONB,
        updated_at            TIMESTAMPTZ NOT NULL DEFAULT now(),
        agent_kind            TEXT NOT NULL DEFAULT 'ephemeral'
                                  CHECK (agent_kind IN ('service', 'instance', 'ephemeral')),
        last_heartbeat_at     TIMESTAMPTZ,
        heartbeat_deadline_at TIMESTAMPTZ,
        UNIQUE (zone_id, id),
        FOREIGN KEY (zone_id, application_id) REFERENCES applications (zone_id, id),
        FOREIGN KEY (zone_id, parent_id) REFERENCES agent_sessions (zone_id, id),
        FOREIGN KEY (zone_id, subject_session_id) REFERENCES sessions (zone_id, id)
    )
    """,
    """
    CREATE INDEX IF NOT EXISTS agent_sessions_zone_id_parent_id_status_idx
        ON agent_sessions (zone_id, parent_id, status)
    """,
    """
    CREATE INDEX IF NOT EXISTS agent_sessions_last_active_at_idx
        ON agent_sessions (last_active_at) WHERE status = 'active'
    """,
    "CREATE INDEX IF NOT EXISTS agent_sessions_subject_session_id_idx ON agent_sessions (subject_session_id)",
    """
    CREATE INDEX IF NOT EXISTS agent_sessions_heartbeat_deadline_at_idx
        ON agent_sessions (heartbeat_deadline_at) WHERE status = 'active' AND agent_kind = 'service'
    """,
    """
    CREATE TABLE IF NOT EXISTS delegation_edges (
        id                      TEXT PRIMARY KEY,
        zone_id                 TEXT NOT NULL,
        source_session_id       TEXT NOT NULL,
        target_session_id       TEXT NOT NULL,
        issuer_application_id   TEXT NOT NULL,
        receiver_application_id TEXT NOT NULL,
        resource_id             TEXT,
        scopes                  TEXT[] NOT NULL DEFAULT '{}',
        constraints_json        JSONB NOT NULL DEFAULT '{}',
        status                  TEXT NOT NULL DEFAULT 'active'
                                    CHECK (status IN ('active', 'revoked', 'expired')),
        expires_at              TIMESTAMPTZ NOT NULL,
        edge_version            INTEGER NOT NULL DEFAULT 0,
        revoked_at              TIMESTAMPTZ,
        created_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
        updated_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
        parent_edge_id          TEXT REFERENCES delegation_edges (id) ON DELETE SET NULL,
        CHECK (source_session_id <> target_session_id),
        FOREIGN KEY (zone_id, source_session_id) REFERENCES agent_sessions (zone_id, id) ON DELETE CASCADE,
        FOREIGN KEY (zone_id, target_session_id) REFERENCES agent_sessions (zone_id, id) ON DELETE CASCADE,
        FOREIGN KEY (zone_id, issuer_application_id) REFERENCES applications (zone_id, id),
        FOREIGN KEY (zone_id, receiver_application_id) REFERENCES applications (zone_id, id),
        FOREIGN KEY (zone_id, resource_id) REFERENCES resources (zone_id, id)
    )
    """,
    """
    CREATE INDEX IF NOT EXISTS delegation_edges_zone_id_source_session_id_status_idx
        ON delegation_edges (zone_id, source_session_id, status)
    """,
    """
    CREATE INDEX IF NOT EXISTS delegation_edges_zone_id_target_session_id_status_idx
        ON delegation_edges (zone_id, target_session_id, status)
    """,
    """
    CREATE INDEX IF NOT EXISTS delegation_edges_zone_id_resource_id_status_idx
        ON delegation_edges (zone_id, resource_id, status) WHERE resource_id IS NOT NULL
    """,
    """
    CREATE INDEX IF NOT EXISTS delegation_edges_expires_at_idx
        ON delegation_edges (expires_at) WHERE status = 'active'
    """,
    """
    CREATE INDEX IF NOT EXISTS delegation_edges_zone_id_parent_edge_id_idx
        ON delegation_edges (zone_id, parent_edge_id) WHERE parent_edge_id IS NOT NULL
    """,
    # ours: the zone's sessions page and a subject's page, newest first (GET …/sessions)
    """
    CREATE INDEX IF NOT EXISTS sessions_zone_page_idx
        ON sessions (zone_id, created_at DESC, id DESC)
    """,
    """
    CREATE INDEX IF NOT EXISTS sessions_zone_subject_page_idx
        ON sessions (zone_id, subject_id, created_at DESC, id DESC)
    """,
    # ours: revocations walk a session's descendants (the contract's indexes do not reach children)
    "CREATE INDEX IF NOT EXISTS sessions_parent_idx ON sessions (parent_id) WHERE parent_id IS NOT NULL",
    # ours: the reaper's DCR collector walks every zone's DCR applications by expiry
    """
    CREATE INDEX IF NOT EXISTS applications_dcr_expiry_idx ON applications (expires_at)
        WHERE registration_method = 'dcr' AND archived_at IS NULL
    """,
    # ours: DCR shutdown finds the live agents of the applications it archives
    """
    CREATE INDEX IF NOT EXISTS agent_sessions_live_application_idx
        ON agent_sessions (zone_id, application_id) WHERE status IN ('active', 'suspended')
    """,
)


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    # the tables may be the coordinator's own (created before us): only our indexes go
    op.execute(
        "DROP INDEX IF EXISTS sessions_zone_page_idx, sessions_zone_subject_page_idx, sessions_parent_idx,"
        " agent_sessions_live_application_idx, applications_dcr_expiry_idx"
    )
