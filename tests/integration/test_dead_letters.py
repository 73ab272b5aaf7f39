"""Requeueing dead letters: each requeued event is announced, and a row is requeued once."""

from __future__ import annotations

import asyncio
import time

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from caracal.db.engine import transaction
from caracal.domain import dead_letters
from caracal.domain.context import Caller
from caracal.errors import Conflict
from caracal.outbox import record_event

STREAM = "caracal.test.dead"


async def dead_events(engine: AsyncEngine, count: int) -> list[str]:
    """`count` events on STREAM, dead-lettered, in commit order."""
    ids = []
    for n in range(count):
        async with transaction(engine) as conn:
            ids.append(await record_event(conn, STREAM, {"n": n}))
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE event_outbox SET dead_at = now(), attempts = 100 WHERE stream_name = :s"),
            {"s": STREAM},
        )
    return ids


async def requeued_announcements(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT payload_json->>'entity_id' FROM event_outbox"
                " WHERE payload_json->>'event' = 'outbox.requeued' ORDER BY seq"
            )
        )
        return [row[0] for row in rows]


async def test_bulk_requeue_announces_every_requeued_event(engine: AsyncEngine) -> None:
    """Requeueing a stream's dead letters emits one outbox.requeued change naming each of them."""
    ids = await dead_events(engine, 3)
    async with transaction(engine) as conn:
        assert await dead_letters.requeue_dead(conn, Caller(), STREAM) == 3
    assert sorted(await requeued_announcements(engine)) == sorted(ids)
    async with engine.connect() as conn:
        states = await conn.execute(
            text("SELECT id FROM event_outbox WHERE stream_name = :s AND dead_at IS NULL ORDER BY seq"),
            {"s": STREAM},
        )
        assert [row[0] for row in states] == ids  # back in the queue in their original order


async def test_concurrent_requeues_of_one_dead_event_requeue_it_once(engine: AsyncEngine) -> None:
    """Two requeues racing on one row: the first wins, the second gets 409 and announces nothing."""
    [event_id] = await dead_events(engine, 1)
    async with engine.connect() as first:
        await first.begin()
        await dead_letters.requeue(first, event_id, Caller())
        second = asyncio.create_task(_requeue_in_own_transaction(engine, event_id))
        await _until_a_statement_waits_on_a_lock(engine)
        await first.commit()
    outcome = await asyncio.wait_for(second, timeout=20)
    assert isinstance(outcome, Conflict) and outcome.code == "outbox_event_not_dead", outcome
    assert await requeued_announcements(engine) == [event_id]


async def _requeue_in_own_transaction(engine: AsyncEngine, event_id: str) -> object:
    try:
        async with transaction(engine) as conn:
            return await dead_letters.requeue(conn, event_id, Caller())
    except Conflict as exc:
        return exc


async def _until_a_statement_waits_on_a_lock(engine: AsyncEngine) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        async with engine.connect() as conn:
            waiting = await conn.execute(
                text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
            )
            if waiting.scalar_one():
                return
        await asyncio.sleep(0.02)
    raise AssertionError("the second requeue never waited on the first one's row lock")
