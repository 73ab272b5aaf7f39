"""The reaper's outbox retention: delivered rows past retention go, in bounded batches; others stay."""

from dataclasses import replace

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from caracal.outbox import prune_delivered, record_event
from caracal.settings import Settings
from caracal_reaper.jobs import prune_outbox


async def _events(engine: AsyncEngine, count: int, dispatched_hours_ago: float | None) -> None:
    async with engine.begin() as conn:
        for n in range(count):
            await record_event(conn, "caracal.changes", {"event": "test", "n": n})
        if dispatched_hours_ago is not None:
            await conn.execute(
                text(
                    "UPDATE event_outbox SET dispatched_at = now() - make_interval(secs => :s) "
                    "WHERE dispatched_at IS NULL AND txid = pg_current_xact_id()"
                ),
                {"s": dispatched_hours_ago * 3600},
            )


async def test_only_rows_delivered_before_retention_are_pruned(
    engine: AsyncEngine, settings: Settings
) -> None:
    """Old delivered rows are deleted; recent delivered, pending and dead rows are kept."""
    await _events(engine, 30, dispatched_hours_ago=200)
    await _events(engine, 5, dispatched_hours_ago=1)
    await _events(engine, 4, dispatched_hours_ago=None)
    pruned = await prune_outbox(engine, replace(settings, outbox_retention_hours=168))
    assert pruned == 30
    async with engine.connect() as conn:
        left = (
            await conn.execute(
                text("SELECT count(*) FILTER (WHERE dispatched_at IS NULL), count(*) FROM event_outbox")
            )
        ).one()
    assert tuple(left) == (4, 9)


async def test_one_prune_batch_is_bounded(engine: AsyncEngine) -> None:
    """A single batch deletes at most its size, so a large backlog is removed in steps."""
    await _events(engine, 25, dispatched_hours_ago=500)
    async with engine.begin() as conn:
        assert await prune_delivered(conn, 168, batch=10) == 10
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM event_outbox"))).scalar() == 15
