"""Applications, providers, resources (and the Gateway's bindings), grants, provider grants, sessions.

Table and column names and stored formats are the original's: the Gateway and the STS read these
tables (CONTRACT.md §5.5, §7.4). `sessions` belongs to the STS (CONTRACT.md §9) and is created only
when it does not exist yet, exactly as the original's migrations leave it.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

STATEMENTS = (
    """
    CREATE TABLE applications (
        id                  TEXT PRIMARY KEY,
        zone_id             TEXT NOT NULL CONSTRAINT applications_zone_id_fkey REFERENCES zones (id),
        name                TEXT NOT NULL CONSTRAINT applications_name_check CHECK (length(name) > 0),
        registration_method TEXT NOT NULL CONSTRAINT applications_registration_method_check
                                CHECK (registration_method IN ('managed', 'dcr')),
        credential_type     TEXT NOT NULL DEFAULT 'token',
        client_secret_hash  TEXT,
        traits              TEXT[] NOT NULL DEFAULT '{}',
        expires_at          TIMESTAMPTZ,
        archived_at         TIMESTAMPTZ,
        created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
        CONSTRAINT applications_zone_id_id_key UNIQUE (zone_id, id),
        CONSTRAINT applications_dcr_expires_check
            CHECK (registration_method <> 'dcr' OR expires_at IS NOT NULL)
    )
    """,
    """
    CREATE INDEX applications_live_page_idx ON applications (zone_id, created_at DESC, id DESC)
        WHERE archived_at IS NULL
    """,
    """
    CREATE INDEX applications_live_dcr_idx ON applications (zone_id, expires_at)
        WHERE registration_method = 'dcr' AND archived_at IS NULL
    """,
    """
    CREATE TABLE providers (
        id                  TEXT PRIMARY KEY,
        zone_id             TEXT NOT NULL CONSTRAINT providers_zone_id_fkey REFERENCES zones (id),
        name                TEXT NOT NULL CONSTRAINT providers_name_check CHECK (length(name) > 0),
        identifier          TEXT NOT NULL,
        provider_kind       TEXT NOT NULL CONSTRAINT providers_provider_kind_check CHECK (
                                provider_kind IN ('none', 'caracal_mandate', 'oauth2_authorization_code',
                                                  'oauth2_client_credentials', 'api_key', 'bearer_token')),
        config_json         JSONB NOT NULL DEFAULT '{}',
        secret_config_ct    BYTEA,
        secret_config_nonce BYTEA,
        secret_config_keys  TEXT[] NOT NULL DEFAULT '{}',
        created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
        updated_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
        archived_at         TIMESTAMPTZ,
        CONSTRAINT providers_zone_id_id_key UNIQUE (zone_id, id),
        CONSTRAINT providers_secret_config_nonce_check CHECK (
            (secret_config_ct IS NULL) = (secret_config_nonce IS NULL)
            AND (secret_config_nonce IS NULL OR length(secret_config_nonce) = 12))
    )
    """,
    """
    CREATE UNIQUE INDEX providers_zone_identifier_active_uidx ON providers (zone_id, identifier)
        WHERE archived_at IS NULL
    """,
    """
    CREATE INDEX providers_live_page_idx ON providers (zone_id, created_at DESC, id DESC)
        WHERE archived_at IS NULL
    """,
    """
    CREATE TABLE resources (
        id                     TEXT PRIMARY KEY,
        zone_id                TEXT NOT NULL CONSTRAINT resources_zone_id_fkey REFERENCES zones (id),
        name                   TEXT NOT NULL CONSTRAINT resources_name_check CHECK (length(name) > 0),
        identifier             TEXT NOT NULL,
        upstream_url           TEXT,
        credential_provider_id TEXT NOT NULL,
        scopes                 TEXT[] NOT NULL
                                   CONSTRAINT resources_scopes_check CHECK (cardinality(scopes) > 0),
        created_at             TIMESTAMPTZ NOT NULL DEFAULT now(),
        updated_at             TIMESTAMPTZ NOT NULL DEFAULT now(),
        archived_at            TIMESTAMPTZ,
        CONSTRAINT resources_zone_id_id_key UNIQUE (zone_id, id),
        CONSTRAINT resources_zone_id_identifier_key UNIQUE (zone_id, identifier),
        CONSTRAINT resources_credential_provider_fkey FOREIGN KEY (zone_id, credential_provider_id)
            REFERENCES providers (zone_id, id)
    )
    """,
    """
    CREATE INDEX resources_live_page_idx ON resources (zone_id, created_at DESC, id DESC)
        WHERE archived_at IS NULL
    """,
    "CREATE INDEX resources_provider_idx ON resources (zone_id, credential_provider_id)",
    """
    CREATE TABLE gateway_resource_bindings (
        zone_id             TEXT NOT NULL
                                CONSTRAINT gateway_resource_bindings_zone_id_fkey REFERENCES zones (id),
        resource_identifier TEXT NOT NULL,
        application_id      TEXT NOT NULL,
        created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
        updated_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
        CONSTRAINT gateway_resource_bindings_pkey PRIMARY KEY (zone_id, resource_identifier),
        CONSTRAINT gateway_resource_bindings_application_fkey FOREIGN KEY (zone_id, application_id)
            REFERENCES applications (zone_id, id)
    )
    """,
    """
    CREATE TABLE gateway_binding_revision (
        id         BOOLEAN PRIMARY KEY DEFAULT true CONSTRAINT gateway_binding_revision_id_check CHECK (id),
        version    BIGINT NOT NULL DEFAULT 0,
        updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
    )
    """,
    "INSERT INTO gateway_binding_revision (id, version) VALUES (true, 0)",
    """
    CREATE TABLE delegated_grants (
        id             TEXT PRIMARY KEY,
        zone_id        TEXT NOT NULL CONSTRAINT delegated_grants_zone_id_fkey REFERENCES zones (id),
        application_id TEXT NOT NULL,
        user_id        TEXT NOT NULL,
        resource_id    TEXT NOT NULL,
        scopes         TEXT[] NOT NULL
                           CONSTRAINT delegated_grants_scopes_check CHECK (cardinality(scopes) > 0),
        status         TEXT NOT NULL DEFAULT 'active' CONSTRAINT delegated_grants_status_check
                           CHECK (status IN ('active', 'revoked', 'expired')),
        created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
        updated_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
        CONSTRAINT delegated_grants_application_fkey FOREIGN KEY (zone_id, application_id)
            REFERENCES applications (zone_id, id),
        CONSTRAINT delegated_grants_resource_fkey FOREIGN KEY (zone_id, resource_id)
            REFERENCES resources (zone_id, id)
    )
    """,
    "CREATE INDEX delegated_grants_page_idx ON delegated_grants (zone_id, created_at DESC, id DESC)",
    "CREATE INDEX delegated_grants_user_idx ON delegated_grants (zone_id, user_id, created_at DESC, id DESC)",
    "CREATE INDEX delegated_grants_application_idx ON delegated_grants (zone_id, application_id, created_at DESC, id DESC)",
    "CREATE INDEX delegated_grants_resource_idx ON delegated_grants (zone_id, resource_id, created_at DESC, id DESC)",
    """
    CREATE TABLE provider_grants (
        id                    TEXT PRIMARY KEY,
        zone_id               TEXT NOT NULL CONSTRAINT provider_grants_zone_id_fkey REFERENCES zones (id),
        user_id               TEXT NOT NULL,
        resource_id           TEXT NOT NULL,
        provider_id           TEXT NOT NULL,
        scopes                TEXT[] NOT NULL
                                  CONSTRAINT provider_grants_scopes_check CHECK (cardinality(scopes) > 0),
        status                TEXT NOT NULL DEFAULT 'active' CONSTRAINT provider_grants_status_check
                                  CHECK (status IN ('active', 'revoked', 'expired')),
        access_token_ct       BYTEA,
        refresh_token_ct      BYTEA,
        expires_at            TIMESTAMPTZ,
        refreshed_at          TIMESTAMPTZ,
        refresh_token_version INTEGER NOT NULL DEFAULT 0,
        created_at            TIMESTAMPTZ NOT NULL DEFAULT now(),
        updated_at            TIMESTAMPTZ NOT NULL DEFAULT now(),
        CONSTRAINT provider_grants_resource_fkey FOREIGN KEY (zone_id, resource_id)
            REFERENCES resources (zone_id, id),
        CONSTRAINT provider_grants_provider_fkey FOREIGN KEY (zone_id, provider_id)
            REFERENCES providers (zone_id, id)
    )
    """,
    """
    CREATE UNIQUE INDEX provider_grants_active_tuple_uidx
        ON provider_grants (zone_id, user_id, resource_id, provider_id) WHERE status = 'active'
    """,
    # the STS's table (CONTRACT.md §9): Postgres' default names, created only where it is missing
    """
    CREATE TABLE IF NOT EXISTS sessions (
        id               TEXT PRIMARY KEY,
        zone_id          TEXT NOT NULL REFERENCES zones (id),
        session_type     TEXT NOT NULL CHECK (session_type IN ('user', 'application')),
        subject_id       TEXT,
        parent_id        TEXT REFERENCES sessions (id),
        status           TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'revoked', 'expired')),
        expires_at       TIMESTAMPTZ NOT NULL,
        authenticated_at TIMESTAMPTZ NOT NULL,
        claims_json      JSONB,
        created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
        UNIQUE (zone_id, id)
    )
    """,
    "CREATE INDEX IF NOT EXISTS sessions_zone_id_subject_id_status_idx ON sessions (zone_id, subject_id, status)",
    "CREATE INDEX IF NOT EXISTS sessions_expires_at_idx ON sessions (expires_at) WHERE status = 'active'",
)


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    op.execute(
        "DROP TABLE provider_grants, delegated_grants, gateway_binding_revision,"
        " gateway_resource_bindings, resources, providers, applications"
    )
