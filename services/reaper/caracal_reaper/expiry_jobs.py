"""The reaper's expiry jobs: the DCR collector and the session reaper, under the original's lock
keys (so an original API on the same database never runs them at the same time as ours), and
Idempotency-Key expiry."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from caracal.db.locks import DCR_GC_LOCK_KEY, IDEMPOTENCY_EXPIRY_LOCK_KEY, SESSION_REAPER_LOCK_KEY
from caracal.domain.expiry import DCR_GC_BATCH, SESSION_EXPIRY_BATCH, collect_expired_dcr, expire_sessions
from caracal.domain.idempotency import EXPIRY_BATCH, expire_keys
from caracal.settings import Settings
from caracal_reaper.job import Job, Outcome


async def collect_dcr_batch(conn: AsyncConnection, settings: Settings) -> Outcome:
    """Archive one batch of DCR applications a day past their expiry."""
    del settings
    archived = await collect_expired_dcr(conn, DCR_GC_BATCH)
    return Outcome(more=archived == DCR_GC_BATCH, changed=archived, events=archived)


async def expire_sessions_batch(conn: AsyncConnection, settings: Settings) -> Outcome:
    """Expire one batch of active sessions past `expires_at`."""
    del settings
    expired = await expire_sessions(conn, SESSION_EXPIRY_BATCH)
    return Outcome(more=expired == SESSION_EXPIRY_BATCH, changed=expired, events=expired)


async def expire_idempotency_keys_batch(conn: AsyncConnection, settings: Settings) -> Outcome:
    """Delete one batch of Idempotency-Key rows older than 24 h (their lookup already ignores them)."""
    del settings
    removed = await expire_keys(conn, EXPIRY_BATCH)
    return Outcome(more=removed == EXPIRY_BATCH, changed=removed)


# every CARACAL_REAPER_INTERVAL_MS (60 s by default, the original's DCR GC interval)
DCR_GC = Job("dcr-gc", DCR_GC_LOCK_KEY, budget_s=5.0, batch=collect_dcr_batch)
SESSION_EXPIRY = Job("session-expiry", SESSION_REAPER_LOCK_KEY, budget_s=5.0, batch=expire_sessions_batch)
IDEMPOTENCY_EXPIRY = Job(
    "idempotency-expiry", IDEMPOTENCY_EXPIRY_LOCK_KEY, budget_s=5.0, batch=expire_idempotency_keys_batch
)
