"""Zone PATCH dcr_enabled:false with revoke_live, end to end (CONTRACT.md §4.1, §5.3, §5.5): rows
changed in one transaction, stream entries in the contract's order, signed, each one acceptable to
the STS and the Gateway; a failure midway leaves nothing changed and no entry."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest_asyncio
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from caracal.events import AGENTS_LIFECYCLE, SESSIONS_REVOKE, verify
from caracal.settings import Settings
from caracal_dispatcher.dispatcher import Dispatcher
from caracal_dispatcher.leases import StreamLeases
from caracal_dispatcher.publisher import StreamPublisher
from tests.integration.api_helpers import make_application, make_zone, outbox
from tests.integration.session_rows import insert_agent, insert_edge, insert_session
from tests.support import HMAC_KEY_HEX

REVOKE_LIVE = {"dcr_enabled": False, "dcr_shutdown": "revoke_live"}
MINUTE = timedelta(minutes=1)


@dataclass
class World:
    """A DCR zone: live DCR apps a and b, a managed app m, an expired DCR app; their sessions,
    agents and delegation edges (names say what revoke_live must do to each)."""

    zone: str
    apps: dict[str, str]
    sessions: dict[str, str]
    agents: dict[str, str]
    edges: dict[str, str]


async def _dcr_app(client: httpx.AsyncClient, admin: dict[str, str], zone: str, name: str) -> str:
    response = await client.post(f"/v1/zones/{zone}/applications/dcr", json={"name": name}, headers=admin)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def _world(client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine) -> World:
    zone = (await make_zone(client, admin, dcr_enabled=True))["id"]
    apps = {name: await _dcr_app(client, admin, zone, name) for name in ("a", "b", "expired")}
    apps["m"] = await make_application(client, admin, zone)
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE applications SET expires_at = now() - interval '1 second' WHERE id = :id"),
            {"id": apps["expired"]},
        )
    s: dict[str, str] = {}
    app_session = {"session_type": "application"}
    s["a"] = await insert_session(engine, zone, subject_id=apps["a"], age=9 * MINUTE, **app_session)
    s["a_child"] = await insert_session(engine, zone, subject_id="user-1", parent_id=s["a"], age=8 * MINUTE)
    s["a_grand"] = await insert_session(engine, zone, subject_id=None, parent_id=s["a_child"], age=7 * MINUTE)
    s["b"] = await insert_session(engine, zone, subject_id=apps["b"], age=6 * MINUTE, **app_session)
    s["b_old_kept"] = await insert_session(
        engine, zone, subject_id=apps["b"], status="revoked", age=5 * MINUTE, **app_session
    )
    s["m_kept"] = await insert_session(engine, zone, subject_id=apps["m"], age=4 * MINUTE, **app_session)
    s["user_a_kept"] = await insert_session(
        engine, zone, subject_id=apps["a"], age=3 * MINUTE
    )  # a user session
    g: dict[str, str] = {}
    g["a"] = await insert_agent(engine, zone, apps["a"], s["a"], age=5 * MINUTE)
    g["a_child"] = await insert_agent(
        engine, zone, apps["m"], s["m_kept"], parent_id=g["a"], status="suspended", depth=1, age=4 * MINUTE
    )
    g["a_done_kept"] = await insert_agent(
        engine, zone, apps["a"], s["a"], status="terminated", age=3 * MINUTE
    )
    g["m_kept"] = await insert_agent(engine, zone, apps["m"], s["m_kept"], age=2 * MINUTE)
    g["m2_kept"] = await insert_agent(engine, zone, apps["m"], s["m_kept"], age=MINUTE)
    e: dict[str, str] = {}
    e["from_a"] = await insert_edge(engine, zone, g["a"], g["m_kept"], apps["m"], age=3 * MINUTE)
    e["to_a_child"] = await insert_edge(engine, zone, g["m_kept"], g["a_child"], apps["m"], age=2 * MINUTE)
    e["between_live_kept"] = await insert_edge(engine, zone, g["m_kept"], g["m2_kept"], apps["m"], age=MINUTE)
    e["old_kept"] = await insert_edge(engine, zone, g["a"], g["m2_kept"], apps["m"], status="revoked")
    return World(zone, apps, s, g, e)


async def _rows(engine: AsyncEngine, table: str, ids: dict[str, str], columns: str) -> dict[str, Any]:
    async with engine.connect() as conn:
        found = await conn.execute(
            text(f"SELECT id, {columns} FROM {table} WHERE id = ANY(:ids)"),
            {"ids": list(ids.values())},
        )
        by_id = {row.id: row for row in found}
    return {name: by_id[row_id] for name, row_id in ids.items()}


async def _state(engine: AsyncEngine, world: World) -> dict[str, Any]:
    apps = await _rows(engine, "applications", world.apps, "archived_at")
    sessions = await _rows(engine, "sessions", world.sessions, "status")
    agents = await _rows(engine, "agent_sessions", world.agents, "status, terminated_at, updated_at")
    edges = await _rows(
        engine, "delegation_edges", world.edges, "status, revoked_at, edge_version, updated_at"
    )
    return {
        "archived": {name for name, row in apps.items() if row.archived_at is not None},
        "sessions": {name: row.status for name, row in sessions.items()},
        "agents": {name: tuple(row)[1:] for name, row in agents.items()},
        "edges": {name: tuple(row)[1:] for name, row in edges.items()},
    }


async def _audit_payload(engine: AsyncEngine) -> Any:
    async with engine.connect() as conn:
        query = text("SELECT payload_json FROM admin_audit_events WHERE action = 'DCR shutdown revoke_live'")
        return (await conn.execute(query)).scalar_one()


async def test_revoke_live_changes_every_live_dcr_identity_and_nothing_else(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    world = await _world(client, admin, engine)
    response = await client.patch(f"/v1/zones/{world.zone}", json=REVOKE_LIVE, headers=admin)
    assert response.status_code == 200, response.text
    assert response.json()["dcr_enabled"] is False
    state = await _state(engine, world)
    assert state["archived"] == {"a", "b"}
    assert {n for n, status in state["sessions"].items() if status == "revoked"} == {
        "a", "a_child", "a_grand", "b", "b_old_kept",
    }  # fmt: skip
    assert {n for n, s in state["sessions"].items() if s == "active"} == {"m_kept", "user_a_kept"}
    terminated_now = {n for n, (status, at, _) in state["agents"].items() if status == "terminated" and at}
    assert terminated_now == {"a", "a_child"}
    assert state["agents"]["a_done_kept"][:2] == ("terminated", None)  # terminated before: left as it was
    assert {n: s for n, (s, *_rest) in state["agents"].items() if s != "terminated"} == {
        "m_kept": "active", "m2_kept": "active",
    }  # fmt: skip
    revoked_edges = {n: (s, v) for n, (s, at, v, _) in state["edges"].items() if s == "revoked" and at}
    assert revoked_edges == {"from_a": ("revoked", 1), "to_a_child": ("revoked", 1)}
    assert state["edges"]["old_kept"][:3] == ("revoked", None, 0)  # revoked before: left as it was
    assert state["edges"]["between_live_kept"][0] == "active"
    payload = await _audit_payload(engine)
    assert {k: payload[k] for k in payload if k.startswith(("live", "revoked", "terminated"))} == {
        "live_dcr_applications": 2,
        "revoked_applications": 2,
        "revoked_sessions": 4,
        "terminated_agents": 2,
        "revoked_delegations": 2,
    }


async def test_revoke_live_entries_follow_the_contracts_order_per_stream(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """Sessions first (oldest first), then per agent its revoke, then per edge one naming a terminated
    agent; lifecycle `terminate` per agent, parent_id only where it has one."""
    world = await _world(client, admin, engine)
    await client.patch(f"/v1/zones/{world.zone}", json=REVOKE_LIVE, headers=admin)
    entries = await outbox(engine)
    z, s, g, e = world.zone, world.sessions, world.agents, world.edges
    reason = {"zone_id": z, "reason": "dcr_shutdown"}
    assert [p for stream, p in entries if stream == SESSIONS_REVOKE] == [
        *({**reason, "session_id": s[name]} for name in ("a", "a_child", "a_grand", "b")),
        {**reason, "session_id": s["a"], "agent_session_id": g["a"]},
        {**reason, "session_id": s["m_kept"], "agent_session_id": g["a_child"]},
        {**reason, "delegation_edge_id": e["from_a"], "agent_session_id": g["a"]},
        {**reason, "delegation_edge_id": e["to_a_child"], "agent_session_id": g["a_child"]},
    ]
    assert [p for stream, p in entries if stream == AGENTS_LIFECYCLE] == [
        {"event": "terminate", **reason, "agent_session_id": g["a"]},
        {"event": "terminate", **reason, "agent_session_id": g["a_child"], "parent_id": g["a"]},
    ]


@pytest_asyncio.fixture
async def dispatcher(settings: Settings, engine: AsyncEngine, redis: Redis) -> AsyncIterator[Dispatcher]:
    publisher = StreamPublisher(redis, settings.streams_hmac_key, settings.outbox_stream_maxlen)
    made = Dispatcher(settings, publisher, StreamLeases(str(settings.database_url)))
    yield made
    await made.leases.close()


async def test_revoke_live_entries_reach_the_streams_signed_and_acceptable_to_the_consumers(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    engine: AsyncEngine,
    redis: Redis,
    dispatcher: Dispatcher,
) -> None:
    """STS: zone_id and session_id or agent_session_id on every revoke entry (none is poison, A3);
    Gateway: an id on each, and every agent it is told of is one this shutdown terminated."""
    world = await _world(client, admin, engine)
    await client.patch(f"/v1/zones/{world.zone}", json=REVOKE_LIVE, headers=admin)
    for _ in range(5):
        await dispatcher.iteration()
    key = bytes.fromhex(HMAC_KEY_HEX)
    published = {}
    for stream in (SESSIONS_REVOKE, AGENTS_LIFECYCLE):
        raw = await redis.xrange(stream)
        published[stream] = [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in raw]
        assert all(verify(key, stream, fields) for fields in published[stream])
    revokes = published[SESSIONS_REVOKE]
    assert len(revokes) == 8 and len(published[AGENTS_LIFECYCLE]) == 2
    terminated = {world.agents["a"], world.agents["a_child"]}
    for fields in revokes:
        assert fields["zone_id"] == world.zone and fields["reason"] == "dcr_shutdown"
        assert "session_id" in fields or "agent_session_id" in fields  # the STS acks, never dead-letters
        assert fields.get("agent_session_id", next(iter(terminated))) in terminated
    assert [f.get("delegation_edge_id") for f in revokes[-2:]] == [
        world.edges["from_a"],
        world.edges["to_a_child"],
    ]
    payloads = [p for stream, p in await outbox(engine) if stream == SESSIONS_REVOKE]
    assert [{k: v for k, v in f.items() if k not in ("outbox_id", "_sig")} for f in revokes] == payloads


async def test_a_failure_midway_leaves_nothing_changed_and_no_entry(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """delegation_edges missing (SQLSTATE 42P01) after apps, sessions and agents were changed: 503
    dcr_shutdown_unavailable, and the transaction leaves every row and the outbox as they were."""
    world = await _world(client, admin, engine)
    before, outbox_before = await _state(engine, world), await outbox(engine)
    async with engine.begin() as conn:
        await conn.execute(text("ALTER TABLE delegation_edges RENAME TO delegation_edges_away"))
    try:
        response = await client.patch(f"/v1/zones/{world.zone}", json=REVOKE_LIVE, headers=admin)
    finally:
        async with engine.begin() as conn:
            await conn.execute(text("ALTER TABLE delegation_edges_away RENAME TO delegation_edges"))
    assert response.status_code == 503, response.text
    assert (response.json()["error"], response.json()["message"]) == (
        "dcr_shutdown_unavailable",
        "the tables DCR shutdown revokes are missing or not accessible",
    )
    assert await _state(engine, world) == before
    assert await outbox(engine) == outbox_before
    status = (await client.get(f"/v1/zones/{world.zone}/dcr-status", headers=admin)).json()
    assert (status["dcr_enabled"], status["live_dcr_applications"]) == (True, 2)


async def test_keep_live_disables_registration_and_revokes_nothing(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    world = await _world(client, admin, engine)
    before, entries_before = await _state(engine, world), await outbox(engine)
    body = {"dcr_enabled": False, "dcr_shutdown": "keep_live"}
    assert (await client.patch(f"/v1/zones/{world.zone}", json=body, headers=admin)).status_code == 200
    assert await _state(engine, world) == before
    new = (await outbox(engine))[len(entries_before) :]
    assert {stream for stream, _ in new} == {"caracal.changes"}  # zone.updated only
    async with engine.connect() as conn:
        query = text("SELECT payload_json FROM admin_audit_events WHERE action = 'DCR shutdown keep_live'")
        payload = (await conn.execute(query)).scalar_one()
    counts = ("live_dcr_applications", "revoked_applications", "revoked_sessions", "terminated_agents")
    assert [payload[name] for name in counts] == [2, 0, 0, 0]


async def test_shutdown_without_a_mode_is_409_with_the_live_count_and_changes_nothing(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    world = await _world(client, admin, engine)
    before = await _state(engine, world)
    response = await client.patch(f"/v1/zones/{world.zone}", json={"dcr_enabled": False}, headers=admin)
    assert response.status_code == 409
    assert (response.json()["error"], response.json()["live_dcr_applications"]) == (
        "dcr_shutdown_required",
        2,
    )
    assert await _state(engine, world) == before
