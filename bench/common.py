"""Shared set-up: embedded Postgres (durable) and Redis in a temp dir, a migrated database, dispatchers."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from redis.asyncio import Redis

from caracal.db.engine import create_engine, plain_url
from caracal.db.migrate import run_migrations
from caracal.embedded import EmbeddedPostgres, EmbeddedRedis
from caracal.events import hwm_key, stats_key
from caracal.outbox import WAKE_CHANNEL
from caracal.settings import Settings, load_settings

DATABASE = "caracal_bench"
DISPATCHER_COMMAND = [sys.executable, "-m", "caracal_dispatcher"]
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
_STARTED = time.monotonic()
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class BenchError(RuntimeError):
    """A benchmark could not produce its figures: a deadline passed or a process died."""


def say(message: str) -> None:
    print(f"[{time.monotonic() - _STARTED:6.1f}s] {message}", flush=True)


def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted, non-empty sequence."""
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


def ratio(value: float, baseline: float) -> str:
    return f"{value / baseline:.3f}" if baseline > 0 else "n/a (baseline is 0)"


@dataclass
class BenchEnv:
    """The servers of one `python -m bench` run and the environment every process gets."""

    workdir: Path
    env: dict[str, str]
    settings: Settings
    postgres: EmbeddedPostgres
    redis_server: EmbeddedRedis

    @property
    def database_url(self) -> str:
        return str(self.settings.database_url)

    @property
    def redis_url(self) -> str:
        return str(self.settings.redis_url)

    @property
    def hmac_key(self) -> bytes:
        assert self.settings.streams_hmac_key is not None
        return self.settings.streams_hmac_key

    async def connect(self) -> asyncpg.Connection:
        return await asyncpg.connect(plain_url(self.database_url))

    def redis(self) -> Redis:
        return Redis.from_url(self.redis_url)


def _service_env(database_url: str, redis_url: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CARACAL_", "STREAMS_", "API_", "ZONE_KEK", "AUDIT_"))
    }
    env.update(
        {
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "CARACAL_KEK": f"bench1:{secrets.token_hex(32)}",
            "STREAMS_HMAC_KEY": secrets.token_hex(32),
            "AUDIT_HMAC_KEY": secrets.token_hex(32),
            "ZONE_KEK": secrets.token_hex(32),
            "CARACAL_SHUTDOWN_TIMEOUT_MS": "5000",
            "LOG_LEVEL": "info",
        }
    )
    return env


async def _migrate(settings: Settings) -> None:
    engine = create_engine(settings, pool_size=1)
    try:
        applied = await run_migrations(engine)
    finally:
        await engine.dispose()
    say(f"migrations applied: {', '.join(applied) or 'none (already at head)'}")


@contextlib.asynccontextmanager
async def bench_env() -> AsyncIterator[BenchEnv]:
    """Start the servers in a fresh temp dir, create and migrate the database; destroy it all after."""
    workdir = Path(tempfile.mkdtemp(prefix="caracal-bench-"))
    # BENCH_FSYNC=off: a diagnostic run that tells the software's latency from the disk's (commits
    # then wait for no flush); the figures we report are taken with fsync on
    durable = os.environ.get("BENCH_FSYNC", "on") != "off"
    postgres = EmbeddedPostgres(workdir / "postgres", durable=durable, database=DATABASE)
    redis_server = EmbeddedRedis(workdir / "redis")
    try:
        say(
            f"starting embedded PostgreSQL (fsync {'on' if durable else 'OFF: BENCH_FSYNC=off'}) and"
            f" Redis (AOF everysec) in {workdir}"
        )
        database_url = await asyncio.to_thread(postgres.start)
        redis_url = await asyncio.to_thread(redis_server.start)
        env = _service_env(database_url, redis_url)
        settings = load_settings(env)
        await _migrate(settings)
        say(f"servers up: postgres :{postgres.port} (database {DATABASE}), redis :{redis_server.port}")
        yield BenchEnv(workdir, env, settings, postgres, redis_server)
    finally:
        say("stopping Postgres and Redis, removing the temp dir")
        redis_server.destroy()
        postgres.destroy()
        shutil.rmtree(workdir, ignore_errors=True)


async def reset(bench: BenchEnv, *streams: str) -> None:
    """An empty outbox, and the streams (with their high-water marks and stats) gone from Redis."""
    conn = await bench.connect()
    try:
        await conn.execute("TRUNCATE event_outbox")
    finally:
        await conn.close()
    redis = bench.redis()
    try:
        for stream in streams:
            await redis.delete(stream, hwm_key(stream), stats_key(stream))
    finally:
        await redis.aclose()


@dataclass
class BenchProcess:
    """A service process a benchmark started: its log, a liveness check, SIGTERM then SIGKILL."""

    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def label(self) -> str:
        return "the process"

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def check_alive(self) -> None:
        code = self.process.poll()
        if code is not None:
            raise BenchError(f"{self.label} exited with {code}:\n{self.log_tail()}")

    def kill(self) -> None:
        self.process.kill()

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.process.wait()


@dataclass
class Dispatcher(BenchProcess):
    """A `python -m caracal_dispatcher` process started by the benchmark."""

    tag: str
    spawned_at: float  # time.time(), comparable with Postgres' now() on this machine

    @property
    def label(self) -> str:
        return f"dispatcher {self.tag}"


@contextlib.contextmanager
def running_dispatcher(bench: BenchEnv, tag: str, **overrides: str) -> Iterator[Dispatcher]:
    """One dispatcher process for the duration of the block; SIGTERM (then SIGKILL) after it."""
    log_path = bench.workdir / f"dispatcher-{tag}.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            DISPATCHER_COMMAND,
            env={**bench.env, **overrides},
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    dispatcher = Dispatcher(process=process, log_path=log_path, tag=tag, spawned_at=time.time())
    settings = " ".join(f"{k}={v}" for k, v in overrides.items()) or "defaults"
    say(f"dispatcher {tag}: started, pid {process.pid} ({settings})")
    try:
        yield dispatcher
    finally:
        code = dispatcher.stop()
        say(f"dispatcher {tag}: stopped (exit code {code})")


async def wait_ready(bench: BenchEnv, dispatcher: Dispatcher) -> float:
    """Wait until it listens for wake-up hints and has polled once (its lease connection exists)."""
    redis, conn = bench.redis(), await bench.connect()
    deadline = time.monotonic() + READY_TIMEOUT_S
    try:
        while time.monotonic() < deadline:
            dispatcher.check_alive()
            if await _subscribed(redis) and await _polled(conn, dispatcher.spawned_at):
                waited = time.time() - dispatcher.spawned_at
                say(f"dispatcher {dispatcher.tag}: ready after {waited:.2f} s")
                return waited
            await asyncio.sleep(0.05)
    finally:
        await redis.aclose()
        await conn.close()
    raise BenchError(
        f"dispatcher {dispatcher.tag} not ready in {READY_TIMEOUT_S:.0f} s:\n{dispatcher.log_tail()}"
    )


async def _subscribed(redis: Redis) -> bool:
    counts = await redis.pubsub_numsub(WAKE_CHANNEL)
    return bool(counts) and int(counts[0][1]) > 0


async def _polled(conn: asyncpg.Connection, since: float) -> bool:
    found = await conn.fetchval(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE application_name = 'caracal-dispatcher' AND backend_start >= to_timestamp($1)",
        since,
    )
    return bool(found)


def _stat_fields(pid: int) -> list[str]:
    """/proc/<pid>/stat from its 3rd field on (the name before it may hold spaces)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2 :].split()


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads)."""
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def reaped_cpu_seconds(pid: int) -> float:
    """cutime + cstime: CPU of the children it has waited for (Postgres' exited workers and backends)."""
    fields = _stat_fields(pid)
    return (int(fields[13]) + int(fields[14])) / CLOCK_TICKS


def postgres_pids(bench: BenchEnv) -> list[int]:
    """The postmaster and its children (backends, checkpointer, walwriter, autovacuum ...)."""
    assert bench.postgres.process is not None
    root = bench.postgres.process.pid
    pids = [root]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int(_stat_fields(int(entry.name))[1]) == root:
                    pids.append(int(entry.name))
            except (OSError, ValueError):
                continue
    return pids


def sample_cpu(pids: Iterable[int]) -> dict[int, float]:
    found = {}
    for pid in pids:
        try:
            found[pid] = cpu_seconds(pid)
        except (OSError, ValueError):
            continue
    return found


def cpu_used(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds spent between two samples by the processes in the second (new ones from 0)."""
    return sum(after[pid] - before.get(pid, 0.0) for pid in after)


Sampler = Callable[[], dict[int, float]]


def process_sampler(pid: int) -> Sampler:
    return lambda: sample_cpu([pid])


def server_samplers(bench: BenchEnv) -> dict[str, Sampler]:
    """Postgres: live processes plus what exited children used (key -postmaster); Redis: its process."""

    def postgres() -> dict[int, float]:
        assert bench.postgres.process is not None
        root = bench.postgres.process.pid
        return {**sample_cpu(postgres_pids(bench)), -root: reaped_cpu_seconds(root)}

    assert bench.redis_server.process is not None
    return {"postgres": postgres, "redis": process_sampler(bench.redis_server.process.pid)}


class CpuMeter:
    """% of one core used by groups of processes between start() and percent()."""

    def __init__(self, samplers: dict[str, Sampler]) -> None:
        self.samplers = samplers
        self.before: dict[str, dict[int, float]] = {}
        self.started = 0.0

    def start(self) -> None:
        self.before = {name: sample() for name, sample in self.samplers.items()}
        self.started = time.monotonic()

    def percent(self) -> dict[str, float]:
        elapsed = time.monotonic() - self.started
        return {
            name: 100 * cpu_used(self.before[name], sample()) / elapsed
            for name, sample in self.samplers.items()
        }
