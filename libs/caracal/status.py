"""`caracal status`: one screen for an operator — schema, outbox per stream, leases, reaper, verdict.

Every fact is read, never inferred from configuration: the schema revision from alembic_version,
the backlog from event_outbox, who publishes a stream from the lease lock in pg_locks, how the
reaper keeps up from the rows its jobs leave behind (sealed audit rows, archived DCR clients,
pruned outbox rows). The verdict names each reason it is not healthy.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from caracal.db.engine import autocommit, create_engine
from caracal.db.migrate import head_revision, revision_of, revisions_behind
from caracal.errors import CaracalError
from caracal.events import CONTRACT_STREAMS
from caracal.health_facts import (
    REAPER_JOB_KEYS,
    LockHolder,
    dispatch_stats,
    lease_holders,
    lock_holders,
    outbox_health,
    stream_lengths,
)
from caracal.reaper_stats import LAST_SUCCESS, job_stats
from caracal.redis_client import connect
from caracal.settings import Settings
from caracal.timefmt import iso_ms

log = logging.getLogger("caracal.status")

LAG_LIMIT_S = 60.0  # an event pending longer than this means its stream is not being published
UNSEALED_LIMIT_S = 60.0  # the sealer runs every second; older unsealed rows mean it is not running
REDIS_TIMEOUT_S = 2.0
AUDIT_SEAL_INTERVAL_S = 1.0  # caracal_reaper.jobs.AUDIT_SEAL; the other jobs run every reaper interval
STALLED_MIN_S = 60.0
SAY_AFTER_S = 1.0  # "says what it is doing if it takes more than a moment"

# What the reaper's jobs leave behind. "Overdue" allows two reaper intervals past each job's rule.
_REAPER_FACTS = text(
    """
    SELECT (SELECT sealed_at FROM admin_audit_events WHERE chain_seq IS NOT NULL
             ORDER BY chain_seq DESC LIMIT 1) AS newest_sealed_at,
           (SELECT count(*) FROM admin_audit_events WHERE chain_seq IS NULL) AS unsealed,
           (SELECT EXTRACT(EPOCH FROM now() - min(occurred_at)) FROM admin_audit_events
             WHERE chain_seq IS NULL) AS oldest_unsealed_s,
           (SELECT EXTRACT(EPOCH FROM now() - min(dispatched_at)) FROM event_outbox
             WHERE dispatched_at IS NOT NULL) AS oldest_dispatched_s,
           (SELECT max(archived_at) FROM applications
             WHERE registration_method = 'dcr') AS newest_dcr_archived_at,
           (SELECT count(*) FROM applications WHERE registration_method = 'dcr' AND archived_at IS NULL
               AND expires_at < now() - interval '24 hours' - :grace * interval '1 second') AS dcr_overdue,
           (SELECT count(*) FROM sessions WHERE status = 'active'
               AND expires_at < now() - :grace * interval '1 second') AS sessions_overdue
    """
)


@dataclass
class StreamFacts:
    """One stream: its outbox backlog, the dispatcher holding its lease, what Redis holds of it."""

    stream: str
    pending: int = 0
    dead: int = 0
    oldest_pending_s: float = 0.0
    oldest_dead_s: float = 0.0
    lease: LockHolder | None = None
    length: int | None = None  # entries in the Redis stream (None: Redis not read)
    dispatched: int | None = None  # the dispatchers' counter
    failures: int | None = None
    last_lag_s: float | None = None  # commit-to-stream lag of the last dispatched batch


@dataclass
class Status:
    version: str
    database: str  # host:port/name, never the credentials
    migration: dict[str, Any]
    streams: list[StreamFacts]
    reaper: dict[str, Any]
    redis: str = "ok"  # or why it could not be read
    reasons: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return not self.reasons

    def as_json(self) -> dict[str, Any]:
        facts = asdict(self)
        facts["verdict"] = "healthy" if self.healthy else "degraded"
        for stream in facts["streams"]:
            if stream["lease"] is not None:
                stream["lease"]["since"] = iso_ms(stream["lease"]["since"])
        for holder in facts["reaper"]["running_now"].values():
            holder["since"] = iso_ms(holder["since"])
        return facts


def package_version() -> str:
    try:
        return importlib.metadata.version("caracal")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


def database_label(url: str) -> str:
    """host:port/name of a postgresql:// URL: where we looked, without the password."""
    rest = url.split("://", 1)[-1]
    return rest.rsplit("@", 1)[-1].split("?", 1)[0]


async def migration_facts(conn: AsyncConnection) -> dict[str, Any]:
    current, head = await revision_of(conn), head_revision()
    behind = revisions_behind(current)
    state = "unknown revision" if behind is None else f"behind: {len(behind)}" if behind else "up to date"
    return {"current": current, "head": head, "state": state, "pending": behind}


async def reaper_facts(conn: AsyncConnection, settings: Settings) -> dict[str, Any]:
    grace = 2 * settings.reaper_interval_ms / 1000
    row = (await conn.execute(_REAPER_FACTS, {"grace": grace})).one()
    retention_s = settings.outbox_retention_hours * 3600
    return {
        "running_now": await lock_holders(conn, REAPER_JOB_KEYS),
        "audit_newest_sealed_at": iso_ms(row.newest_sealed_at),
        "audit_unsealed": row.unsealed,
        "audit_oldest_unsealed_s": float(row.oldest_unsealed_s or 0),
        "outbox_oldest_dispatched_s": float(row.oldest_dispatched_s or 0),
        "outbox_retention_s": retention_s,
        "outbox_prune_overdue": float(row.oldest_dispatched_s or 0) > retention_s + grace,
        "dcr_newest_archived_at": iso_ms(row.newest_dcr_archived_at),
        "dcr_overdue": row.dcr_overdue,
        "sessions_overdue": row.sessions_overdue,
    }


async def database_facts(
    conn: AsyncConnection, settings: Settings
) -> tuple[dict[str, Any], list[StreamFacts], dict[str, Any]]:
    migration = await migration_facts(conn)
    health = await outbox_health(conn)
    names = sorted(set(CONTRACT_STREAMS) | set(health))
    streams = [StreamFacts(name) for name in names]
    leases = await lease_holders(conn, names)
    for facts in streams:
        backlog = health.get(facts.stream, {})
        facts.pending, facts.dead = int(backlog.get("pending", 0)), int(backlog.get("dead", 0))
        facts.oldest_pending_s = float(backlog.get("oldest_pending", 0))
        facts.oldest_dead_s = float(backlog.get("oldest_dead", 0))
        facts.lease = leases.get(facts.stream)
    return migration, streams, await reaper_facts(conn, settings)


async def add_redis_facts(redis_url: str, status: Status, settings: Settings) -> None:
    """Fill each stream's Redis facts and the reaper's last runs, or say why Redis could not be read."""
    names = [facts.stream for facts in status.streams]
    client = connect(redis_url, socket_connect_timeout=REDIS_TIMEOUT_S, socket_timeout=REDIS_TIMEOUT_S)
    try:
        stats = await dispatch_stats(client, names)
        lengths = await stream_lengths(client, names)
        jobs = await job_stats(client)
    except Exception as exc:  # any failure to read is a fact to report, not a crash
        log.debug("Redis facts could not be read", exc_info=True)
        status.redis = f"unreachable ({type(exc).__name__}: {exc})"
        return
    finally:
        await client.aclose()
    for facts in status.streams:
        counters = stats.get(facts.stream, {})
        facts.length = lengths[facts.stream]
        facts.dispatched = int(counters.get("dispatched", 0))
        facts.failures = int(counters.get("failures", 0))
        facts.last_lag_s = float(counters["last_lag_ms"]) / 1000 if "last_lag_ms" in counters else None
    status.reaper["last_runs"] = last_runs(jobs, settings)


def last_runs(jobs: dict[str, dict[str, float]], settings: Settings) -> dict[str, dict[str, Any]]:
    """Per reaper job (as the reaper reports to Redis after each run): its last success, how long
    ago, and after how long without one it counts as stalled (three intervals, at least a minute)."""
    now = time.time()
    runs = {}
    for job in REAPER_JOB_KEYS:
        figures = jobs.get(job, {})
        interval = AUDIT_SEAL_INTERVAL_S if job == "audit-seal" else settings.reaper_interval_ms / 1000
        last = figures.get(LAST_SUCCESS)
        runs[job] = {
            "last_success": iso_ms(datetime.fromtimestamp(last, UTC)) if last else None,
            "age_s": round(now - last, 3) if last else None,
            "stalled_after_s": max(STALLED_MIN_S, 3 * interval),
            "runs": int(figures.get("runs", 0)),
            "failures": int(figures.get("failures", 0)),
        }
    return runs


async def gather(settings: Settings) -> Status:
    """Every fact, from one pooled connection and one Redis client; CaracalError when Postgres is away."""
    database_url = settings.database_url or ""
    engine = create_engine(settings, pool_size=1)
    try:
        async with autocommit(engine) as conn:
            migration, streams, reaper = await database_facts(conn, settings)
    finally:
        await engine.dispose()
    status = Status(package_version(), database_label(database_url), migration, streams, reaper)
    if settings.redis_url:
        await add_redis_facts(settings.redis_url, status, settings)
    else:
        status.redis = "not configured (REDIS_URL unset)"
    status.reasons = verdict_reasons(status)
    return status


def verdict_reasons(status: Status) -> list[str]:
    """Why the system is degraded, one line each; empty when healthy."""
    reasons = []
    if status.migration["state"] != "up to date":
        reasons.append(f"schema {status.migration['state']} (database at {status.migration['current']})")
    if status.redis != "ok":
        reasons.append(f"redis {status.redis}")
    for stream in status.streams:
        reasons += _stream_reasons(stream)
    return reasons + _reaper_reasons(status.reaper)


def _stream_reasons(s: StreamFacts) -> list[str]:
    reasons = []
    if s.dead:
        reasons.append(f"{s.stream}: {s.dead} dead letter(s)")
    if s.pending and s.lease is None:
        reasons.append(f"{s.stream}: {s.pending} pending and no dispatcher holds its lease")
    if s.oldest_pending_s > LAG_LIMIT_S:
        reasons.append(f"{s.stream}: oldest pending event is {s.oldest_pending_s:.0f} s old")
    return reasons


def _reaper_reasons(reaper: dict[str, Any]) -> list[str]:
    reasons = [
        f"reaper job {job} stalled: last success {run['age_s']:.0f} s ago"
        for job, run in reaper.get("last_runs", {}).items()
        if run["age_s"] is not None and run["age_s"] > run["stalled_after_s"]
    ]
    if reaper["audit_unsealed"] and reaper["audit_oldest_unsealed_s"] > UNSEALED_LIMIT_S:
        reasons.append(
            f"audit sealer behind: oldest unsealed row {reaper['audit_oldest_unsealed_s']:.0f} s old"
        )
    if reaper["outbox_prune_overdue"]:
        reasons.append("outbox retention behind: delivered rows older than OUTBOX_RETENTION_HOURS remain")
    if reaper["dcr_overdue"]:
        reasons.append(f"DCR collector behind: {reaper['dcr_overdue']} client(s) overdue for archiving")
    if reaper["sessions_overdue"]:
        reasons.append(f"session reaper behind: {reaper['sessions_overdue']} session(s) overdue for expiry")
    return reasons


async def gather_saying(settings: Settings) -> Status:
    """gather(), with a line on stderr if it takes more than a moment (a slow or distant database)."""
    loop = asyncio.get_running_loop()
    where = database_label(settings.database_url or "")
    notice = loop.call_later(
        SAY_AFTER_S,
        lambda: print(f"caracal status: reading {where} and Redis...", file=sys.stderr, flush=True),
    )
    try:
        return await gather(settings)
    finally:
        notice.cancel()


def status_main(*, as_json: bool) -> int:
    """The command: 0 healthy, 1 degraded, 2 cannot run (no settings, database unreachable)."""
    from caracal.cli import settings_or_exit  # noqa: PLC0415 - cli imports this module lazily
    from caracal.status_view import print_json, print_screen  # noqa: PLC0415

    settings = settings_or_exit()
    if not settings.database_url:
        print("caracal status: DATABASE_URL is not set", file=sys.stderr)
        return 2
    try:
        status = asyncio.run(gather_saying(settings))
    except CaracalError as exc:
        where = database_label(settings.database_url)
        print(f"caracal status: cannot read the database at {where}: {exc}", file=sys.stderr)
        return 2
    (print_json if as_json else print_screen)(status)
    return 0 if status.healthy else 1
