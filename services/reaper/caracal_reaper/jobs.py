"""The reaper's jobs (outbox retention now; session expiry and DCR clean-up as they land)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from caracal.db.locks import OUTBOX_PRUNE_LOCK_KEY
from caracal.outbox import prune_delivered
from caracal.settings import Settings
from caracal_reaper.job import Job, Outcome

PRUNE_BATCH = 5000


async def prune_outbox_batch(conn: AsyncConnection, settings: Settings) -> Outcome:
    """Delete one batch of outbox rows delivered longer ago than the retention period."""
    removed = await prune_delivered(conn, settings.outbox_retention_hours, PRUNE_BATCH)
    return Outcome(more=removed == PRUNE_BATCH, changed=removed)


OUTBOX_PRUNE = Job("outbox-prune", OUTBOX_PRUNE_LOCK_KEY, budget_s=5.0, batch=prune_outbox_batch)

JOBS = (OUTBOX_PRUNE,)
