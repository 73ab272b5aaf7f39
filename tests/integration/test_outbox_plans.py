"""Every index on event_outbox serves a query the dispatcher, the reaper or the API runs.

An index no plan uses still costs every outbox write (each insert and each delivery mark
updates it), so one that serves nothing goes: 0002 dropped event_outbox_dispatch_ready, which plans
only ever took as a stand-in for event_outbox_undispatched_age (the same predicate)."""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.elements import ClauseElement

from caracal.db.engine import plain_url
from caracal.db.paging import Page, PagedQuery
from caracal.db.tables.outbox import event_outbox
from caracal.domain.dead_letters import DEAD
from caracal.outbox import _PRUNE
from caracal.settings import Settings
from caracal_dispatcher.dispatcher import (
    MARK_DISPATCHED,
    MARK_FAILED,
    NEXT_BATCH,
    NEXT_BATCH_AFTER,
    PENDING_STREAMS,
    RECONCILE,
)

ROWS = 60_000
# A steady state: most rows delivered within the retention period (a few past it, for the reaper),
# a backlog pending on a few streams, some dead; each row from its own transaction (txid).
FILL = f"""
INSERT INTO event_outbox (id, stream_name, payload_json, dispatched_at, dead_at, attempts, txid)
SELECT 'ev' || n, 'caracal.plan.' || (n % 8), '{{}}'::jsonb,
       CASE WHEN n % 50 = 0 THEN NULL
            WHEN n % 1000 = 1 THEN now() - interval '200 hours'
            ELSE now() - make_interval(secs => n) END,
       CASE WHEN n % 500 = 0 THEN now() END,
       n % 3, (n % 700 + 3)::text::xid8
  FROM generate_series(1, {ROWS}) AS n
"""


def _queries() -> list[tuple[str, str, list[Any]]]:
    ids = ["ev50", "ev100"]
    return [
        ("pending streams", PENDING_STREAMS, []),
        ("next batch", NEXT_BATCH, ["caracal.plan.2", 32]),
        ("next batch after", NEXT_BATCH_AFTER, ["caracal.plan.2", 32, "1", 1]),
        ("mark dispatched", MARK_DISPATCHED, [ids, "w"]),
        ("mark failed", MARK_FAILED, [ids, "boom", "w", 100, 2.0]),
        ("reconcile", RECONCILE, ["caracal.plan.2", "w", "1", 10]),
        ("prune", _literal(_PRUNE.bindparams(hours=168, batch=5000)), []),
        ("list dead", _list_dead_sql(), []),
    ]


def _list_dead_sql() -> str:
    statement, params = PagedQuery(DEAD, event_outbox.c.dead_at, event_outbox.c.id).statement(Page(limit=50))
    return _literal(statement.params(**params))


def _literal(statement: ClauseElement) -> str:
    """The statement's SQL as the API or the reaper sends it, its parameters inlined."""
    return str(statement.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))


def _indexes_in(plan: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(plan, dict):
        if "Index Name" in plan:
            found.add(plan["Index Name"])
        for value in plan.values():
            found |= _indexes_in(value)
    elif isinstance(plan, list):
        for item in plan:
            found |= _indexes_in(item)
    return found


@pytest_asyncio.fixture
async def filled(settings: Settings, engine: AsyncEngine) -> AsyncEngine:
    async with engine.begin() as conn:
        await conn.execute(text(FILL))
        await conn.execute(text("ANALYZE event_outbox"))
    return engine


async def test_every_outbox_index_serves_a_query_of_the_workers_or_the_api(
    settings: Settings, filled: AsyncEngine
) -> None:
    """EXPLAIN each outbox query on a filled table: every index of event_outbox shows in some plan."""
    conn = await asyncpg.connect(plain_url(str(settings.database_url)))
    try:
        used: dict[str, set[str]] = {}
        for name, sql, args in _queries():
            plan = json.loads(await conn.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *args))
            used[name] = _indexes_in(plan)
        indexes = {
            row["indexname"]
            for row in await conn.fetch("SELECT indexname FROM pg_indexes WHERE tablename = 'event_outbox'")
        }
    finally:
        await conn.close()
    unused = indexes - set().union(*used.values())
    assert unused == set(), used
