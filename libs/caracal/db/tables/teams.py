"""The teams table: named groups of members (`[{id, role}]`) per zone, hard-deleted (CONTRACT.md §7.4)."""

from __future__ import annotations

from sqlalchemy import (
    CheckConstraint,
    Column,
    ForeignKeyConstraint,
    Index,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from caracal.db.tables import TS, aggregate, metadata

TEAMS_PKEY = "teams_pkey"
TEAMS_ZONE_ID_FKEY = "teams_zone_id_fkey"
TEAMS_NAME_CHECK = "teams_name_check"
TEAMS_ZONE_ID_NAME_KEY = "teams_zone_id_name_key"
TEAMS_PAGE_IDX = "teams_page_idx"

teams = Table(
    "teams",
    metadata,
    Column("id", Text, nullable=False),
    Column("zone_id", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("members_json", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("created_at", TS, nullable=False, server_default=text("now()")),
    Column("updated_at", TS, nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("id", name=TEAMS_PKEY),
    ForeignKeyConstraint(["zone_id"], ["zones.id"], name=TEAMS_ZONE_ID_FKEY),
    CheckConstraint("length(name) > 0", name=TEAMS_NAME_CHECK),
    UniqueConstraint("zone_id", "name", name=TEAMS_ZONE_ID_NAME_KEY),
    info=aggregate("team", invalid="invalid_body"),
)

# a zone's teams page newest first
Index(TEAMS_PAGE_IDX, teams.c.zone_id, teams.c.created_at.desc(), teams.c.id.desc())
