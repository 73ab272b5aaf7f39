"""Policies, immutable policy versions, policy sets, their versions and bindings (issue 9).

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# One statement per entry (see 0001). The trigger function's text is the one
# caracal.db.tables.policies declares, so the schema test finds the same body on both sides.
STATEMENTS: tuple[str, ...] = (
    """
    CREATE TABLE policies (
        id          TEXT PRIMARY KEY,
        zone_id     TEXT NOT NULL CONSTRAINT policies_zone_id_fkey REFERENCES zones (id),
        name        TEXT NOT NULL CONSTRAINT policies_name_check CHECK (length(name) > 0),
        description TEXT,
        owner_type  TEXT NOT NULL DEFAULT 'customer',
        archived_at TIMESTAMPTZ,
        created_by  TEXT NOT NULL,
        created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
        updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
        CONSTRAINT policies_zone_id_name_key UNIQUE (zone_id, name)
    )
    """,
    """
    CREATE INDEX policies_live_page_idx ON policies (zone_id, created_at DESC, id DESC)
        WHERE archived_at IS NULL
    """,
    """
    CREATE TABLE policy_versions (
        id             TEXT PRIMARY KEY,
        policy_id      TEXT NOT NULL CONSTRAINT policy_versions_policy_id_fkey REFERENCES policies (id),
        version        INTEGER NOT NULL CONSTRAINT policy_versions_version_check CHECK (version > 0),
        content        TEXT NOT NULL,
        content_sha256 TEXT NOT NULL,
        schema_version TEXT NOT NULL,
        created_by     TEXT NOT NULL,
        created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
        archived_at    TIMESTAMPTZ,
        CONSTRAINT policy_versions_policy_id_version_key UNIQUE (policy_id, version)
    )
    """,
    """
    CREATE TABLE policy_sets (
        id          TEXT PRIMARY KEY,
        zone_id     TEXT NOT NULL CONSTRAINT policy_sets_zone_id_fkey REFERENCES zones (id),
        name        TEXT NOT NULL CONSTRAINT policy_sets_name_check CHECK (length(name) > 0),
        description TEXT,
        scope_type  TEXT NOT NULL DEFAULT 'zone',
        owner_type  TEXT NOT NULL DEFAULT 'customer',
        archived_at TIMESTAMPTZ,
        created_by  TEXT NOT NULL,
        created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
        updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
        CONSTRAINT policy_sets_zone_id_id_key UNIQUE (zone_id, id),
        CONSTRAINT policy_sets_zone_id_name_key UNIQUE (zone_id, name)
    )
    """,
    """
    CREATE INDEX policy_sets_live_page_idx ON policy_sets (zone_id, created_at DESC, id DESC)
        WHERE archived_at IS NULL
    """,
    """
    CREATE TABLE policy_set_versions (
        id              TEXT PRIMARY KEY,
        policy_set_id   TEXT NOT NULL
                            CONSTRAINT policy_set_versions_policy_set_id_fkey REFERENCES policy_sets (id),
        version         INTEGER NOT NULL CONSTRAINT policy_set_versions_version_check CHECK (version > 0),
        manifest_json   JSONB NOT NULL,
        manifest_sha256 TEXT NOT NULL,
        schema_version  TEXT NOT NULL,
        created_by      TEXT NOT NULL,
        created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
        archived_at     TIMESTAMPTZ,
        CONSTRAINT policy_set_versions_policy_set_id_version_key UNIQUE (policy_set_id, version),
        CONSTRAINT policy_set_versions_policy_set_id_id_key UNIQUE (policy_set_id, id)
    )
    """,
    """
    CREATE TABLE policy_set_bindings (
        zone_id           TEXT NOT NULL CONSTRAINT policy_set_bindings_zone_id_fkey REFERENCES zones (id),
        policy_set_id     TEXT NOT NULL,
        active_version_id TEXT,
        shadow_version_id TEXT,
        updated_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
        CONSTRAINT policy_set_bindings_pkey PRIMARY KEY (zone_id, policy_set_id),
        CONSTRAINT policy_set_bindings_policy_set_fkey FOREIGN KEY (zone_id, policy_set_id)
            REFERENCES policy_sets (zone_id, id),
        CONSTRAINT policy_set_bindings_active_version_fkey FOREIGN KEY (policy_set_id, active_version_id)
            REFERENCES policy_set_versions (policy_set_id, id),
        CONSTRAINT policy_set_bindings_shadow_version_fkey FOREIGN KEY (policy_set_id, shadow_version_id)
            REFERENCES policy_set_versions (policy_set_id, id)
    )
    """,
    """
    CREATE UNIQUE INDEX policy_set_bindings_one_active_uidx ON policy_set_bindings (zone_id)
        WHERE active_version_id IS NOT NULL
    """,
    """
    CREATE OR REPLACE FUNCTION caracal_refuse_version_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION USING MESSAGE = TG_TABLE_NAME || ' rows are immutable',
            ERRCODE = 'restrict_violation';
    END
    $$
    """,
    """
    CREATE TRIGGER policy_versions_immutable BEFORE UPDATE OR DELETE ON policy_versions
        FOR EACH ROW EXECUTE FUNCTION caracal_refuse_version_change()
    """,
    """
    CREATE TRIGGER policy_set_versions_immutable BEFORE UPDATE OR DELETE ON policy_set_versions
        FOR EACH ROW EXECUTE FUNCTION caracal_refuse_version_change()
    """,
)


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    pass
