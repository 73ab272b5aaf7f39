"""The step_up_challenges table: the STS writes it, the API lists and satisfies them (CONTRACT.md §9).

Created exactly as the original's migrations leave it (Postgres' default constraint and index names),
so an STS pointed at our database finds the table it expects; created only if missing.
"""

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
from sqlalchemy.dialects.postgresql import JSONB

from caracal.db.tables import TS, aggregate, metadata

CHALLENGE_TYPES = ("human_approval", "mfa", "software_attestation")

STEP_UP_CHALLENGES_PKEY = "step_up_challenges_pkey"
STEP_UP_CHALLENGES_ZONE_ID_FKEY = "step_up_challenges_zone_id_fkey"
STEP_UP_CHALLENGES_CHALLENGE_TYPE_CHECK = "step_up_challenges_challenge_type_check"
STEP_UP_CHALLENGES_SESSION_IDX = "step_up_challenges_session_id_idx"
STEP_UP_CHALLENGES_CONSUMED_UIDX = "step_up_challenges_id_idx"
STEP_UP_CHALLENGES_PRINCIPAL_IDX = "step_up_challenges_zone_id_principal_id_idx"
STEP_UP_CHALLENGES_APPROVER_IDX = "step_up_challenges_approver_subject_id_idx"

step_up_challenges = Table(
    "step_up_challenges",
    metadata,
    Column("id", Text, nullable=False),
    Column("zone_id", Text, nullable=False),
    Column("session_id", Text),
    Column("challenge_type", Text, nullable=False),
    Column("metadata_json", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("created_at", TS, nullable=False, server_default=text("now()")),
    Column("expires_at", TS, nullable=False),
    Column("satisfied_at", TS),
    Column("challenge_secret_hash", LargeBinary),
    Column("principal_id", Text),
    Column("resource_set_hash", LargeBinary),
    Column("consumed_at", TS),
    Column("approver_subject_id", Text),
    PrimaryKeyConstraint("id", name=STEP_UP_CHALLENGES_PKEY),
    ForeignKeyConstraint(["zone_id"], ["zones.id"], name=STEP_UP_CHALLENGES_ZONE_ID_FKEY, ondelete="CASCADE"),
    CheckConstraint(
        "challenge_type IN ('human_approval', 'mfa', 'software_attestation')",
        name=STEP_UP_CHALLENGES_CHALLENGE_TYPE_CHECK,
    ),
    info=aggregate("challenge"),
)

Index(STEP_UP_CHALLENGES_SESSION_IDX, step_up_challenges.c.session_id)
Index(
    STEP_UP_CHALLENGES_CONSUMED_UIDX,
    step_up_challenges.c.id,
    unique=True,
    postgresql_where=text("consumed_at IS NOT NULL"),
)
Index(
    STEP_UP_CHALLENGES_PRINCIPAL_IDX,
    step_up_challenges.c.zone_id,
    step_up_challenges.c.principal_id,
    postgresql_where=text("consumed_at IS NULL"),
)
Index(
    STEP_UP_CHALLENGES_APPROVER_IDX,
    step_up_challenges.c.approver_subject_id,
    postgresql_where=text("approver_subject_id IS NOT NULL"),
)
