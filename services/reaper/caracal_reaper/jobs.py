"""The reaper's jobs: outbox retention, the audit sealer, DCR clean-up, session and Idempotency-Key expiry."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from caracal.audit_chain import seal_batch
from caracal.db.locks import AUDIT_SEAL_LOCK_KEY, OUTBOX_PRUNE_LOCK_KEY
from caracal.outbox import prune_delivered
from caracal.settings import Settings
from caracal_reaper.expiry_jobs import DCR_GC, IDEMPOTENCY_EXPIRY, SESSION_EXPIRY
from caracal_reaper.job import Job, Outcome

PRUNE_BATCH = 5000


async def prune_outbox_batch(conn: AsyncConnection, settings: Settings) -> Outcome:
    """Delete one batch of outbox rows delivered longer ago than the retention period."""
    removed = await prune_delivered(conn, settings.outbox_retention_hours, PRUNE_BATCH)
    return Outcome(more=removed == PRUNE_BATCH, changed=removed)


OUTBOX_PRUNE = Job("outbox-prune", OUTBOX_PRUNE_LOCK_KEY, budget_s=5.0, batch=prune_outbox_batch)


async def seal_audit_batch(conn: AsyncConnection, settings: Settings) -> Outcome:
    """Chain the next committed admin audit rows (docs/audit-chain.md); nothing without AUDIT_HMAC_KEY."""
    if settings.audit_hmac_key is None:
        return Outcome(more=False)
    report = await seal_batch(conn, settings.audit_hmac_key)
    return Outcome(more=report.more, changed=report.sealed)


# every second, so a row stays unsealed for about that long; a backlog is sealed batch after batch
AUDIT_SEAL = Job("audit-seal", AUDIT_SEAL_LOCK_KEY, budget_s=2.0, batch=seal_audit_batch, interval_s=1.0)

JOBS = (OUTBOX_PRUNE, AUDIT_SEAL, DCR_GC, SESSION_EXPIRY, IDEMPOTENCY_EXPIRY)
