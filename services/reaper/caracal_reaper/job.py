"""The shape of a reaper job: a name, its advisory-lock key, a time budget and a batch to run."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection

from caracal.settings import Settings


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one batch did: whether work remains, how many rows it changed, how many events it wrote."""

    more: bool
    changed: int = 0
    events: int = 0  # outbox rows: after the commit the dispatcher is woken, as the API does


Batch = Callable[[AsyncConnection, Settings], Awaitable[Outcome]]


@dataclass(frozen=True, slots=True)
class Job:
    """One kind of clean-up. `batch` runs in a transaction of its own and must stay small (a few
    hundred rows); the reaper repeats it while work remains, until `budget_s` is spent, and then
    starts the job again at once rather than after a full interval. `lock_key` (caracal.db.locks)
    keeps two reapers from running the job at the same time. `interval_s` overrides
    CARACAL_REAPER_INTERVAL_MS for a job that must run more often (the audit sealer)."""

    name: str
    lock_key: int
    budget_s: float
    batch: Batch
    interval_s: float | None = None


@dataclass(frozen=True, slots=True)
class JobReport:
    """One run of a job: `ran` is False when another reaper holds its lock."""

    name: str
    ran: bool
    batches: int = 0
    changed: int = 0
    events: int = 0
    more: bool = False
