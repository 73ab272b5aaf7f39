"""Rows the STS and the coordinator write (sessions with their trees, agent sessions, delegation
edges), inserted with plain SQL as those services would; and the isolation test's session maker."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from caracal.ids import new_id

_SESSION = text(
    "INSERT INTO sessions (id, zone_id, session_type, subject_id, parent_id, status, expires_at,"
    " authenticated_at, created_at)"
    " VALUES (:id, :zone_id, :type, :subject_id, :parent_id, :status,"
    " now() + CAST(:expires_in AS interval), now(), now() - CAST(:age AS interval))"
)
_AGENT = text(
    "INSERT INTO agent_sessions (id, zone_id, application_id, parent_id, subject_session_id, status,"
    " depth, spawned_at) VALUES (:id, :zone_id, :application_id, :parent_id, :subject_session_id,"
    " :status, :depth, now() - CAST(:age AS interval))"
)
_EDGE = text(
    "INSERT INTO delegation_edges (id, zone_id, source_session_id, target_session_id,"
    " issuer_application_id, receiver_application_id, status, expires_at, created_at)"
    " VALUES (:id, :zone_id, :source, :target, :issuer, :receiver, :status, now() + interval '1 hour',"
    " now() - CAST(:age AS interval))"
)


async def insert_session(
    engine: AsyncEngine,
    zone_id: str,
    *,
    subject_id: str | None = "user-1",
    session_type: str = "user",
    parent_id: str | None = None,
    status: str = "active",
    expires_in: timedelta = timedelta(hours=1),
    age: timedelta = timedelta(0),
) -> str:
    """One session (created `age` ago, expiring `expires_in` from now); its id."""
    session_id = new_id()
    async with engine.begin() as conn:
        await conn.execute(
            _SESSION,
            {
                "id": session_id,
                "zone_id": zone_id,
                "type": session_type,
                "subject_id": subject_id,
                "parent_id": parent_id,
                "status": status,
                "expires_in": expires_in,
                "age": age,
            },
        )
    return session_id


async def insert_agent(
    engine: AsyncEngine,
    zone_id: str,
    application_id: str,
    subject_session_id: str,
    *,
    parent_id: str | None = None,
    status: str = "active",
    depth: int = 0,
    age: timedelta = timedelta(0),
) -> str:
    agent_id = new_id()
    async with engine.begin() as conn:
        await conn.execute(
            _AGENT,
            {
                "id": agent_id,
                "zone_id": zone_id,
                "application_id": application_id,
                "parent_id": parent_id,
                "subject_session_id": subject_session_id,
                "status": status,
                "depth": depth,
                "age": age,
            },
        )
    return agent_id


async def insert_edge(
    engine: AsyncEngine,
    zone_id: str,
    source: str,
    target: str,
    application_id: str,
    *,
    status: str = "active",
    age: timedelta = timedelta(0),
) -> str:
    edge_id = new_id()
    async with engine.begin() as conn:
        await conn.execute(
            _EDGE,
            {
                "id": edge_id,
                "zone_id": zone_id,
                "source": source,
                "target": target,
                "issuer": application_id,
                "receiver": application_id,
                "status": status,
                "age": age,
            },
        )
    return edge_id


async def make_session(engine: AsyncEngine, zone_id: str) -> str:
    """The isolation test's row maker: one active user session in the zone."""
    return await insert_session(engine, zone_id)
