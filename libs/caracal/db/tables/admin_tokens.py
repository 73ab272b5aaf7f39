"""The admin_tokens table: SHA-256 digests of bearer tokens, their scope and capability."""

from __future__ import annotations

from sqlalchemy import (
    CheckConstraint,
    Column,
    ForeignKeyConstraint,
    Index,
    LargeBinary,
    PrimaryKeyConstraint,
    Table,
    Text,
    text,
)

from caracal.db.tables import TS, aggregate, metadata

ADMIN_TOKENS_PKEY = "admin_tokens_pkey"
ADMIN_TOKENS_TOKEN_SHA256_CHECK = "admin_tokens_token_sha256_check"
ADMIN_TOKENS_SCOPE_CHECK = "admin_tokens_scope_check"
ADMIN_TOKENS_CAPABILITY_CHECK = "admin_tokens_capability_check"
ADMIN_TOKENS_SCOPE_ZONE_CHECK = "admin_tokens_scope_zone_check"
ADMIN_TOKENS_ZONE_ID_FKEY = "admin_tokens_zone_id_fkey"
ADMIN_TOKENS_ACTIVE_SHA256_UIDX = "admin_tokens_active_sha256_uidx"
ADMIN_TOKENS_PAGE_IDX = "admin_tokens_page_idx"

admin_tokens = Table(
    "admin_tokens",
    metadata,
    Column("id", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("token_sha256", LargeBinary, nullable=False),
    Column("scope", Text, nullable=False),
    Column("zone_id", Text),
    Column("capability", Text, nullable=False, server_default=text("'write'")),
    Column("created_by", Text, nullable=False),
    Column("created_at", TS, nullable=False, server_default=text("now()")),
    Column("last_used_at", TS),
    Column("revoked_at", TS),
    PrimaryKeyConstraint("id", name=ADMIN_TOKENS_PKEY),
    CheckConstraint("length(token_sha256) = 32", name=ADMIN_TOKENS_TOKEN_SHA256_CHECK),
    CheckConstraint("scope IN ('global', 'zone')", name=ADMIN_TOKENS_SCOPE_CHECK),
    ForeignKeyConstraint(["zone_id"], ["zones.id"], name=ADMIN_TOKENS_ZONE_ID_FKEY),
    CheckConstraint("capability IN ('read', 'write', 'approve')", name=ADMIN_TOKENS_CAPABILITY_CHECK),
    CheckConstraint(
        "(scope = 'global' AND zone_id IS NULL) OR (scope = 'zone' AND zone_id IS NOT NULL)",
        name=ADMIN_TOKENS_SCOPE_ZONE_CHECK,
    ),
    info=aggregate("admin_token", invalid="invalid_admin_token_request"),
)

# authentication looks a live token up by its digest; a revoked digest may be minted again
Index(
    ADMIN_TOKENS_ACTIVE_SHA256_UIDX,
    admin_tokens.c.token_sha256,
    unique=True,
    postgresql_where=admin_tokens.c.revoked_at.is_(None),
)
Index(ADMIN_TOKENS_PAGE_IDX, admin_tokens.c.created_at.desc(), admin_tokens.c.id.desc())
