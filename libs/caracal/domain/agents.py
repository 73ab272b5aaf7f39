"""Agent sessions and delegation edges (the coordinator's tables): terminating the agents of
applications with their descendants, revoking the edges that touch them, and their stream entries
(CONTRACT.md §4.1 revoke_live, §5.3)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ARRAY, Select, Text, Update, any_, bindparam, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from caracal.db.tables.agents import agent_sessions, delegation_edges
from caracal.domain.session_trees import record_in_chunks
from caracal.events import AGENTS_LIFECYCLE, SESSIONS_REVOKE, Scalar

_LIVE = ("active", "suspended")
_IDS = ARRAY(Text)


def _terminate_trees() -> Update:
    """Live agents of the applications and all their descendants by parent_id (walked through any
    status; UNION ends a cycle), the live ones terminated."""
    roots: Select[Any] = select(agent_sessions.c.id).where(
        agent_sessions.c.zone_id == bindparam("in_zone"),
        agent_sessions.c.application_id == any_(bindparam("application_ids", type_=_IDS)),
        agent_sessions.c.status.in_(_LIVE),
    )
    tree = roots.cte("agent_tree", recursive=True)
    child = agent_sessions.alias("child")
    tree = tree.union(
        select(child.c.id)
        .join(tree, child.c.parent_id == tree.c.id)
        .where(child.c.zone_id == bindparam("in_zone"))
    )
    return (
        update(agent_sessions)
        .where(
            agent_sessions.c.zone_id == bindparam("in_zone"),
            agent_sessions.c.status.in_(_LIVE),
            agent_sessions.c.id.in_(select(tree.c.id)),
        )
        .values(status="terminated", terminated_at=func.now(), updated_at=func.now())
        .returning(
            agent_sessions.c.id,
            agent_sessions.c.parent_id,
            agent_sessions.c.subject_session_id,
            agent_sessions.c.depth,
            agent_sessions.c.spawned_at,
        )
    )


_TERMINATE = _terminate_trees()
_AGENTS = bindparam("agent_ids", type_=_IDS)
_REVOKE_EDGES = (
    update(delegation_edges)
    .where(
        delegation_edges.c.zone_id == bindparam("in_zone"),
        delegation_edges.c.status == "active",
        or_(
            delegation_edges.c.source_session_id == any_(_AGENTS),
            delegation_edges.c.target_session_id == any_(_AGENTS),
        ),
    )
    .values(
        status="revoked",
        revoked_at=func.now(),
        edge_version=delegation_edges.c.edge_version + 1,
        updated_at=func.now(),
    )
    .returning(
        delegation_edges.c.id,
        delegation_edges.c.source_session_id,
        delegation_edges.c.target_session_id,
        delegation_edges.c.created_at,
    )
)


@dataclass(frozen=True, slots=True)
class AgentShutdown:
    terminated_agents: int
    revoked_delegations: int


async def terminate_application_agents(
    conn: AsyncConnection,
    zone_id: str,
    application_ids: Sequence[str],
    *,
    reason: str,
    request_id: str | None,
) -> AgentShutdown:
    """Terminate the applications' live agents (and descendants), revoke the active edges touching
    them, and write per agent its lifecycle `terminate` and its revoke entry, then one revoke entry
    per edge."""
    params = {"in_zone": zone_id, "application_ids": list(application_ids)}
    agents = sorted(
        (await conn.execute(_TERMINATE, params)).all(), key=lambda a: (a.depth, a.spawned_at, a.id)
    )
    terminated = [agent.id for agent in agents]
    edges: list[Any] = []
    if terminated:
        found = await conn.execute(_REVOKE_EDGES, {"in_zone": zone_id, "agent_ids": terminated})
        edges = sorted(found.all(), key=lambda e: (e.created_at, e.id))
    lifecycle = [_terminate_entry(zone_id, agent, reason) for agent in agents]
    revokes = [_agent_revoke_entry(zone_id, agent, reason) for agent in agents]
    ended = set(terminated)
    revokes += [_edge_revoke_entry(zone_id, edge, ended, reason) for edge in edges]
    await record_in_chunks(conn, AGENTS_LIFECYCLE, lifecycle, request_id)
    await record_in_chunks(conn, SESSIONS_REVOKE, revokes, request_id)
    return AgentShutdown(terminated_agents=len(agents), revoked_delegations=len(edges))


def _terminate_entry(zone_id: str, agent: Any, reason: str) -> dict[str, Scalar]:
    entry: dict[str, Scalar] = {"event": "terminate", "zone_id": zone_id, "agent_session_id": agent.id}
    if agent.parent_id is not None:
        entry["parent_id"] = agent.parent_id
    entry["reason"] = reason
    return entry


def _agent_revoke_entry(zone_id: str, agent: Any, reason: str) -> dict[str, Scalar]:
    return {
        "zone_id": zone_id,
        "session_id": agent.subject_session_id,
        "agent_session_id": agent.id,
        "reason": reason,
    }


def _edge_revoke_entry(zone_id: str, edge: Any, terminated: set[str], reason: str) -> dict[str, Scalar]:
    """A3: the original STS fails an entry with neither session_id nor agent_session_id, so the
    edge's entry names an agent this same shutdown terminated (the Gateway learns nothing new from
    it); never one that stays live, which the Gateway would cut off."""
    agent = edge.source_session_id if edge.source_session_id in terminated else edge.target_session_id
    return {"zone_id": zone_id, "delegation_edge_id": edge.id, "agent_session_id": agent, "reason": reason}
