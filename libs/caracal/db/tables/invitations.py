"""The invitations table: who was invited to a zone, with which role, until when (CONTRACT.md §7.4)."""

from __future__ import annotations

from sqlalchemy import (
    CheckConstraint,
    Column,
    ForeignKeyConstraint,
    Index,
    PrimaryKeyConstraint,
    Table,
    Text,
    text,
)

from caracal.db.tables import TS, aggregate, metadata

INVITATIONS_PKEY = "invitations_pkey"
INVITATIONS_ZONE_ID_FKEY = "invitations_zone_id_fkey"
INVITATIONS_FIELDS_CHECK = "invitations_fields_check"
INVITATIONS_PAGE_IDX = "invitations_page_idx"

invitations = Table(
    "invitations",
    metadata,
    Column("id", Text, nullable=False),
    Column("zone_id", Text, nullable=False),
    Column("email", Text, nullable=False),
    Column("role", Text, nullable=False),
    Column("invited_by", Text, nullable=False),
    Column("accepted_at", TS),
    Column("expires_at", TS, nullable=False),
    Column("created_at", TS, nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("id", name=INVITATIONS_PKEY),
    ForeignKeyConstraint(["zone_id"], ["zones.id"], name=INVITATIONS_ZONE_ID_FKEY),
    CheckConstraint(
        "length(email) > 0 AND length(role) > 0 AND length(invited_by) > 0", name=INVITATIONS_FIELDS_CHECK
    ),
    info=aggregate("invitation"),
)

# a zone's invitations page newest first
Index(INVITATIONS_PAGE_IDX, invitations.c.zone_id, invitations.c.created_at.desc(), invitations.c.id.desc())
