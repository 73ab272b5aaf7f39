"""The servers and processes tests/e2e/test_faults.py breaks: its own Postgres, a Redis whose data
directory is on a small tmpfs it can fill, one `caracal api` and one `caracal dispatcher`."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bench.traffic import EXPECTED, Call, Traffic, delivery_verdict, undelivered
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from caracal.embedded import EmbeddedPostgres, EmbeddedRedis
from tests.support import ADMIN_TOKEN, Service, eventually, service_env, start_service, wait_ready

IDLE_TX_TIMEOUT_MS = 4000
DISK_SIZE = "64m"
DELIVERY_WITHIN_S = 60.0


@dataclass
class Rig:
    postgres: EmbeddedPostgres
    redis: EmbeddedRedis
    disk: Path  # where Redis keeps its AOF: a tmpfs of DISK_SIZE when we may mount one
    mounted: bool
    env: dict[str, str]
    logdir: Path
    api: Service | None = None
    dispatcher: Service | None = None
    calls: list[Call] = field(default_factory=list)  # every request of the module, for the checker

    @property
    def api_url(self) -> str:
        assert self.api is not None
        return self.api.url

    def start_processes(self) -> None:
        self.api = start_service("api", self.env, self.logdir)
        wait_ready(self.api)
        self.dispatcher = start_service("dispatcher", self.env, self.logdir)

    def stop_processes(self) -> None:
        for service in (self.dispatcher, self.api):
            if service is not None:
                service.stop()

    def tails(self) -> str:
        return "\n".join(f"--- {s.name} ---\n{s.log()[-2500:]}" for s in (self.api, self.dispatcher) if s)


def _mount_tmpfs(path: Path) -> bool:
    """A tmpfs of DISK_SIZE at `path` (we need root); False when it cannot be mounted."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return False
    mount = ["mount", "-t", "tmpfs", "-o", f"size={DISK_SIZE}", "tmpfs", str(path)]
    return subprocess.run(mount, capture_output=True, check=False).returncode == 0


@contextlib.contextmanager
def fault_servers(workdir: Path) -> Iterator[Rig]:
    """Postgres and Redis that only this module uses, since its faults would break other modules'."""
    disk = workdir / "disk"
    mounted = _mount_tmpfs(disk)
    postgres = EmbeddedPostgres(workdir / "postgres", durable=False)
    redis = EmbeddedRedis(disk / "redis")
    try:
        env = service_env(
            postgres.start(),
            redis.start(),
            CARACAL_DB_IDLE_TX_TIMEOUT_MS=str(IDLE_TX_TIMEOUT_MS),
            CARACAL_DB_STATEMENT_TIMEOUT_MS="5000",
            CARACAL_OUTBOX_POLL_MS="100",
            API_V1_RATE_LIMIT_PER_MIN="1000000",  # on, so Redis is on the request path (and fails open)
        )
        yield Rig(postgres, redis, disk, mounted, env, workdir)
    finally:
        redis.destroy()
        postgres.destroy()
        if mounted:
            subprocess.run(["umount", "-l", str(disk)], capture_output=True, check=False)


@contextlib.asynccontextmanager
async def load(rig: Rig, mix: dict[str, int], connections: int = 4) -> AsyncIterator[Traffic]:
    """A bounded closed-loop load for the block; its calls join the module's history."""
    traffic = Traffic([rig.api_url], ADMIN_TOKEN, connections=connections, mix=mix, timeout=15)
    traffic.start()
    try:
        yield traffic
    finally:
        await traffic.stop()
        rig.calls += traffic.calls


def answered_ok(calls: list[Call], kind: str, at_least: int) -> bool:
    return sum(c.ok for c in calls if c.kind == kind) >= at_least


def unexpected(calls: list[Call], allowed: frozenset[tuple[int, str]] = frozenset()) -> list[str]:
    """Calls answered with anything but their success status or an allowed (status, code)."""
    return [
        f"{c.kind} {c.zone}: {c.status} {c.error}"
        for c in calls
        if c.status != EXPECTED[c.kind] and (c.status, c.error) not in allowed
    ]


async def all_delivered_once_in_order(rig: Rig) -> None:
    """Every event of the module reached caracal.changes once, in commit order, and every
    acknowledged write has its event."""

    async def drained() -> bool:
        return await undelivered(rig.postgres.url) == 0

    await eventually(drained, f"every event delivered\n{rig.tails()}", within=DELIVERY_WITHIN_S, poll=0.1)
    verdict, missing = await delivery_verdict(rig.postgres.url, rig.redis.url, rig.calls)
    assert verdict.ok, verdict.report()
    assert not missing, f"acknowledged writes without their event: {missing[:5]}"


@contextlib.asynccontextmanager
async def full_disk(rig: Rig) -> AsyncIterator[str]:
    """Redis' disk full for the block (a filler file takes every free byte of the tmpfs); yields how.

    Without a tmpfs (not root), Redis' memory is "full" instead: maxmemory below what it uses, with
    noeviction, so writes are refused with OOM the way a full disk refuses them with MISCONF."""
    if not rig.mounted:
        async with _full_memory(rig) as how:
            yield how
        return
    filler = rig.disk / "filler"
    try:
        await asyncio.to_thread(_fill, filler)
        yield f"tmpfs of {DISK_SIZE} filled"
    finally:
        filler.unlink(missing_ok=True)


def _fill(path: Path) -> None:
    """Write zeros to `path` until the file system is full. Unbuffered: a buffered file would keep the
    bytes its last write could not place and fail again, with ENOSPC, when it is closed."""
    chunk = b"\0" * (1 << 20)
    with path.open("wb", buffering=0) as out:
        try:
            while out.write(chunk):
                pass
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise


@contextlib.asynccontextmanager
async def _full_memory(rig: Rig) -> AsyncIterator[str]:
    redis = Redis.from_url(rig.redis.url)
    try:
        limit = int((await redis.info("memory"))["used_memory"]) // 2  # below what the data needs
        await redis.config_set("maxmemory", limit)
        yield f"maxmemory {limit} bytes with noeviction (no tmpfs: not root)"
    finally:
        await redis.config_set("maxmemory", 0)
        await redis.aclose()


async def redis_refuses_writes(rig: Rig) -> bool:
    """A write to Redis is refused: MISCONF (its last AOF write failed) or OOM (over maxmemory)."""
    redis = Redis.from_url(rig.redis.url)
    try:
        await redis.set("caracal:e2e:full-probe", "1")
    except ResponseError:
        return True
    finally:
        await redis.aclose()
    return False
