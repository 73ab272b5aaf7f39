"""Reaper jobs: each takes a Postgres advisory lock so one reaper replica runs it at a time."""

from __future__ import annotations

import logging
import time

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from caracal.db.locks import OUTBOX_PRUNE_LOCK_KEY
from caracal.outbox import prune_delivered
from caracal.settings import Settings

log = logging.getLogger("caracal.reaper")

PRUNE_BUDGET_S = 5.0


async def prune_outbox(engine: AsyncEngine, settings: Settings) -> int:
    """Delete delivered outbox rows past retention, batch by batch, for at most a few seconds."""
    pruned = 0
    deadline = time.monotonic() + PRUNE_BUDGET_S
    while time.monotonic() < deadline:
        async with engine.begin() as conn:
            if not (
                await conn.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": OUTBOX_PRUNE_LOCK_KEY})
            ).scalar():
                break
            removed = await prune_delivered(conn, settings.outbox_retention_hours)
        pruned += removed
        if removed == 0:
            break
    if pruned:
        log.info(
            "outbox: pruned %d delivered events older than %d h", pruned, settings.outbox_retention_hours
        )
    return pruned
