"""The coordinator's agent_sessions and delegation_edges (CONTRACT.md §9); the API only terminates
and revokes them (DCR shutdown, CONTRACT.md §4.1).

Created exactly as the original's migrations leave them (Postgres' default constraint and index
names), only where missing, so a coordinator pointed at our database finds the tables it expects.
`agent_sessions_live_application_idx` is ours.
"""

from __future__ import annotations

from sqlalchemy import (
    CheckConstraint,
    Column,
    ForeignKeyConstraint,
    Index,
    Integer,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from caracal.db.tables import TS, aggregate, metadata

AGENT_STATUSES = ("active", "suspended", "terminated", "expired")
EDGE_STATUSES = ("active", "revoked", "expired")


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


agent_sessions = Table(
    "agent_sessions",
    metadata,
    Column("id", Text, nullable=False),
    Column("zone_id", Text, nullable=False),
    Column("application_id", Text, nullable=False),
    Column("parent_id", Text),
    Column("subject_session_id", Text, nullable=False),
    Column("status", Text, nullable=False, server_default=text("'active'::text")),
    Column("depth", Integer, nullable=False, server_default=text("0")),
    Column("capabilities", ARRAY(Text), nullable=False, server_default=text("'{}'::text[]")),
    Column("max_children", Integer, nullable=False, server_default=text("10")),
    Column("child_count", Integer, nullable=False, server_default=text("0")),
    Column("spawned_at", TS, nullable=False, server_default=text("now()")),
    Column("last_active_at", TS, nullable=False, server_default=text("now()")),
    Column("terminated_at", TS),
    Column("ttl_seconds", Integer, nullable=False, server_default=text("3600")),
    Column("metadata_json", JSONB),
    Column("updated_at", TS, nullable=False, server_default=text("now()")),
    Column("agent_kind", Text, nullable=False, server_default=text("'ephemeral'::text")),
    Column("last_heartbeat_at", TS),
    Column("heartbeat_deadline_at", TS),
    PrimaryKeyConstraint("id", name="agent_sessions_pkey"),
    UniqueConstraint("zone_id", "id", name="agent_sessions_zone_id_id_key"),
    ForeignKeyConstraint(
        ["zone_id", "application_id"],
        ["applications.zone_id", "applications.id"],
        name="agent_sessions_zone_id_application_id_fkey",
    ),
    ForeignKeyConstraint(
        ["zone_id", "parent_id"],
        ["agent_sessions.zone_id", "agent_sessions.id"],
        name="agent_sessions_zone_id_parent_id_fkey",
    ),
    ForeignKeyConstraint(
        ["zone_id", "subject_session_id"],
        ["sessions.zone_id", "sessions.id"],
        name="agent_sessions_zone_id_subject_session_id_fkey",
    ),
    CheckConstraint(_one_of("status", AGENT_STATUSES), name="agent_sessions_status_check"),
    CheckConstraint(
        _one_of("agent_kind", ("service", "instance", "ephemeral")), name="agent_sessions_agent_kind_check"
    ),
    info=aggregate("agent_session"),
)

Index(
    "agent_sessions_zone_id_parent_id_status_idx",
    agent_sessions.c.zone_id,
    agent_sessions.c.parent_id,
    agent_sessions.c.status,
)
Index(
    "agent_sessions_last_active_at_idx",
    agent_sessions.c.last_active_at,
    postgresql_where=text("status = 'active'"),
)
Index("agent_sessions_subject_session_id_idx", agent_sessions.c.subject_session_id)
Index(
    "agent_sessions_heartbeat_deadline_at_idx",
    agent_sessions.c.heartbeat_deadline_at,
    postgresql_where=text("status = 'active' AND agent_kind = 'service'"),
)
# ours: DCR shutdown finds the live agents of the applications it archives
Index(
    "agent_sessions_live_application_idx",
    agent_sessions.c.zone_id,
    agent_sessions.c.application_id,
    postgresql_where=text("status IN ('active', 'suspended')"),
)

delegation_edges = Table(
    "delegation_edges",
    metadata,
    Column("id", Text, nullable=False),
    Column("zone_id", Text, nullable=False),
    Column("source_session_id", Text, nullable=False),
    Column("target_session_id", Text, nullable=False),
    Column("issuer_application_id", Text, nullable=False),
    Column("receiver_application_id", Text, nullable=False),
    Column("resource_id", Text),
    Column("scopes", ARRAY(Text), nullable=False, server_default=text("'{}'::text[]")),
    Column("constraints_json", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("status", Text, nullable=False, server_default=text("'active'::text")),
    Column("expires_at", TS, nullable=False),
    Column("edge_version", Integer, nullable=False, server_default=text("0")),
    Column("revoked_at", TS),
    Column("created_at", TS, nullable=False, server_default=text("now()")),
    Column("updated_at", TS, nullable=False, server_default=text("now()")),
    Column("parent_edge_id", Text),
    PrimaryKeyConstraint("id", name="delegation_edges_pkey"),
    CheckConstraint("source_session_id <> target_session_id", name="delegation_edges_check"),
    CheckConstraint(_one_of("status", EDGE_STATUSES), name="delegation_edges_status_check"),
    *(
        ForeignKeyConstraint(
            ["zone_id", f"{end}_session_id"],
            ["agent_sessions.zone_id", "agent_sessions.id"],
            name=f"delegation_edges_zone_id_{end}_session_id_fkey",
            ondelete="CASCADE",
        )
        for end in ("source", "target")
    ),
    *(
        ForeignKeyConstraint(
            ["zone_id", f"{end}_application_id"],
            ["applications.zone_id", "applications.id"],
            name=f"delegation_edges_zone_id_{end}_application_id_fkey",
        )
        for end in ("issuer", "receiver")
    ),
    ForeignKeyConstraint(
        ["zone_id", "resource_id"],
        ["resources.zone_id", "resources.id"],
        name="delegation_edges_zone_id_resource_id_fkey",
    ),
    ForeignKeyConstraint(
        ["parent_edge_id"],
        ["delegation_edges.id"],
        name="delegation_edges_parent_edge_id_fkey",
        ondelete="SET NULL",
    ),
    info=aggregate("delegation_edge"),
)

for _end in ("source", "target"):
    Index(
        f"delegation_edges_zone_id_{_end}_session_id_status_idx",
        delegation_edges.c.zone_id,
        delegation_edges.c[f"{_end}_session_id"],
        delegation_edges.c.status,
    )
Index(
    "delegation_edges_zone_id_resource_id_status_idx",
    delegation_edges.c.zone_id,
    delegation_edges.c.resource_id,
    delegation_edges.c.status,
    postgresql_where=text("resource_id IS NOT NULL"),
)
Index(
    "delegation_edges_expires_at_idx",
    delegation_edges.c.expires_at,
    postgresql_where=text("status = 'active'"),
)
Index(
    "delegation_edges_zone_id_parent_edge_id_idx",
    delegation_edges.c.zone_id,
    delegation_edges.c.parent_edge_id,
    postgresql_where=text("parent_edge_id IS NOT NULL"),
)
