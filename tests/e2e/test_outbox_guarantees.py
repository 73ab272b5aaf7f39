"""Delivery guarantees of real dispatcher processes under faults, judged by a total-queue checker."""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from caracal.db.engine import create_engine
from caracal.db.migrate import run_migrations
from caracal.embedded import EmbeddedPostgres, EmbeddedRedis
from caracal.events import stats_key
from caracal.settings import load_settings
from tests.conftest import recreate_database
from tests.e2e.total_queue import WRITERS, Published, Verdict, Workload, check_total_queue
from tests.support import Servers, Service, service_env, start_service

DELIVERY_TIMEOUT_S = 60.0
KILLS = 12
MIN_COMMITTED = 300  # transactions a run needs before its verdict means anything


# --- real servers and processes --------------------------------------------------------------------


class Fleet:
    """The dispatcher processes of one test; their logs explain any failure."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.started: list[Service] = []
        self.by_worker: dict[str, Service] = {}

    def start(self, env: dict[str, str], worker: str) -> Service:
        service = start_service("dispatcher", {**env, "WORKER_ID": worker}, self.logdir, tag=f"-{worker}")
        self.started.append(service)
        self.by_worker[worker] = service
        return service

    def tails(self, chars: int = 2500) -> str:
        return "\n".join(
            f"--- {s.log_path.name} (exit code {s.process.poll()}) ---\n{s.log()[-chars:]}"
            for s in self.started[-4:]
        )

    def stop_all(self) -> None:
        for service in self.started:
            service.stop(signal.SIGTERM, timeout=10)


@pytest.fixture
def fleet(logdir: Path) -> Iterator[Fleet]:
    dispatchers = Fleet(logdir)
    yield dispatchers
    dispatchers.stop_all()


@dataclass
class Setup:
    env: dict[str, str]
    engine: AsyncEngine
    redis: Redis
    streams: tuple[str, ...]


async def prepare(database_url: str, redis_url: str, tag: str, **env: str) -> Setup:
    """A migrated database, the dispatcher environment, and this test's own stream names.

    Own names, because a stream's high-water mark holds transaction ids of the cluster that wrote it.
    """
    base = service_env(database_url, redis_url, CARACAL_OUTBOX_POLL_MS="50", **env)
    engine = create_engine(load_settings(base), pool_size=WRITERS + 3)
    await run_migrations(engine)
    streams = tuple(f"caracal.e2e.{tag}.{name}" for name in ("revoke", "policy", "changes"))
    return Setup(base, engine, Redis.from_url(redis_url), streams)


async def close(setup: Setup) -> None:
    await setup.engine.dispose()
    await setup.redis.aclose()


async def published_count(setup: Setup) -> int:
    return sum([await setup.redis.xlen(stream) for stream in setup.streams])


async def undelivered(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        query = text("SELECT count(*) FROM event_outbox WHERE dispatched_at IS NULL")
        return int((await conn.execute(query)).scalar_one())


async def delivered(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        query = text("SELECT count(*) FROM event_outbox WHERE dispatched_at IS NOT NULL")
        return int((await conn.execute(query)).scalar_one())


async def wait_until(
    what: str, check: Callable[[], Awaitable[bool]], within: float, fleet: Fleet, every: float = 0.1
) -> float:
    """Poll `check` until true; returns the seconds it took, or fails naming `what` with the logs."""
    started = time.monotonic()
    last_error: Exception | None = None
    while time.monotonic() - started < within:
        try:
            if await check():
                return time.monotonic() - started
        except Exception as exc:  # a server may still be coming back
            last_error = exc
        await asyncio.sleep(every)
    raise AssertionError(f"{what}: not within {within:.1f}s (last error {last_error!r})\n{fleet.tails()}")


def writes_since(workload: Workload, moment: float, count: int = 10) -> Callable[[], Awaitable[bool]]:
    """A check for wait_until: more than `count` transactions committed after `moment`."""

    async def grown() -> bool:
        return workload.committed_since(moment) > count

    return grown


async def wait_for_progress(setup: Setup, since: int, fleet: Fleet, workload: Workload) -> None:
    async def grown() -> bool:
        if await published_count(setup) > since:
            return True
        return workload.done and await undelivered(setup.engine) == 0

    await wait_until("the dispatcher publishing", grown, 20, fleet, every=0.01)


async def verify_delivery(setup: Setup, workload: Workload, fleet: Fleet) -> Verdict:
    """Once there is load enough to prove anything, stop writing, wait until Postgres has nothing
    undelivered, then check the streams."""
    await wait_until("enough load", writes_since(workload, 0.0, MIN_COMMITTED), DELIVERY_TIMEOUT_S, fleet)
    await workload.stop()

    async def drained() -> bool:
        return await undelivered(setup.engine) == 0

    await wait_until("every committed event delivered", drained, DELIVERY_TIMEOUT_S, fleet)
    async with setup.engine.connect() as conn:
        query = text("SELECT id, stream_name, txid::text::bigint, seq FROM event_outbox")
        stored = {r[0]: (r[1], int(r[2]), int(r[3])) for r in await conn.execute(query)}
    published: Published = {}
    for stream in setup.streams:
        entries = await setup.redis.xrange(stream)
        published[stream] = [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in entries]
    verdict = check_total_queue(workload.history, published, stored)
    assert verdict.ok, f"seed {workload.seed}: {verdict.report()}\n{fleet.tails()}"
    never = {i for t in workload.history if t.outcome in ("rolled_back", "failed") for _, i in t.events}
    assert never.isdisjoint(stored), "a transaction that did not commit left rows behind"
    assert verdict.committed >= MIN_COMMITTED, f"too little load to prove anything: {verdict.report()}"
    return verdict


@pytest_asyncio.fixture
async def private_redis(tmp_path: Path) -> AsyncIterator[EmbeddedRedis]:
    """A Redis server this test may stop and start; AOF in its data dir keeps the streams."""
    server = EmbeddedRedis(tmp_path / "redis")
    await asyncio.to_thread(server.start)
    yield server
    await asyncio.to_thread(server.destroy)


@pytest_asyncio.fixture
async def private_postgres(tmp_path: Path) -> AsyncIterator[EmbeddedPostgres]:
    """A PostgreSQL server this test may restart."""
    server = EmbeddedPostgres(tmp_path / "postgres", durable=False)
    await asyncio.to_thread(server.start)
    yield server
    await asyncio.to_thread(server.destroy)


# --- the faults ---------------------------------------------------------------------------------------


@asynccontextmanager
async def undelivered_rows_locked(engine: AsyncEngine) -> AsyncIterator[tuple[int, int]]:
    """Row locks on undelivered events: a dispatcher can still publish them but blocks marking them.

    Yields how many rows are locked and the locking backend's pid. SKIP LOCKED: never wait for the
    dispatcher's own row locks, so it may wait for ours but we never deadlock with it.
    """
    async with engine.connect() as conn:
        trans = await conn.begin()
        try:
            query = text("SELECT id FROM event_outbox WHERE dispatched_at IS NULL FOR UPDATE SKIP LOCKED")
            locked = len((await conn.execute(query)).all())
            yield locked, (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        finally:
            await trans.rollback()


async def terminate_blocked(engine: AsyncEngine, holder: int) -> None:
    async with engine.connect() as conn:
        query = text(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE :h = ANY(pg_blocking_pids(pid))"
        )
        await conn.execute(query, {"h": holder})


async def kill_between_publish_and_mark(setup: Setup, victim: Service, fleet: Fleet) -> None:
    """SIGKILL the dispatcher after it published a batch, while it waits to mark the rows delivered."""
    for _ in range(200):
        async with undelivered_rows_locked(setup.engine) as (locked, holder):

            async def marking_blocked(holder: int = holder) -> bool:
                async with setup.engine.connect() as conn:
                    query = text(
                        "SELECT count(*) FROM pg_stat_activity WHERE :h = ANY(pg_blocking_pids(pid))"
                    )
                    return bool((await conn.execute(query, {"h": holder})).scalar_one())

            if locked:
                await wait_until("the dispatcher marking locked rows", marking_blocked, 10, fleet, every=0.01)
                assert victim.stop(signal.SIGKILL) == -signal.SIGKILL, victim.log()[-2000:]
                # A killed client's backend still waits on our locks and would finish its autocommitted
                # mark once we let go; end it too, as a crash of the whole host would.
                await terminate_blocked(setup.engine, holder)
                return
        await asyncio.sleep(0.02)
    raise AssertionError(f"no undelivered event to hold back\n{fleet.tails()}")


@pytest.mark.e2e
async def test_killed_dispatcher_loses_and_repeats_nothing(servers: Servers, fleet: Fleet) -> None:
    """SIGKILLed a dozen times under load (every third between XADD and marking): all once, in order."""
    database = await recreate_database(servers, "caracal_e2e_kill")
    setup = await prepare(database, servers.redis_url, "kill", CARACAL_OUTBOX_BATCH="8")
    rng = random.Random()
    workload = Workload(setup.engine, setup.streams, max_events=4000)  # writes go on through every kill
    in_window = 0
    try:
        workload.start()
        for kill in range(KILLS):
            before = await published_count(setup)
            victim = fleet.start(setup.env, f"kill{kill}")
            await wait_for_progress(setup, before, fleet, workload)
            if kill % 3 == 1:
                await kill_between_publish_and_mark(setup, victim, fleet)
            else:
                await asyncio.sleep(rng.uniform(0.0, 0.3))
                assert victim.stop(signal.SIGKILL) == -signal.SIGKILL, victim.log()[-2000:]
            # entries in Redis whose rows are not marked: the kill fell between XADD and marking
            in_window += await published_count(setup) > await delivered(setup.engine)
        fleet.start(setup.env, "survivor")
        verdict = await verify_delivery(setup, workload, fleet)
        assert in_window >= 4, f"only {in_window} kills fell between publishing and marking"
        print(f"kill: {verdict.report()}; {KILLS} kills, {in_window} between XADD and marking")
    finally:
        await close(setup)


@pytest.mark.e2e
async def test_redis_outage_delays_but_loses_and_repeats_nothing(
    servers: Servers, private_redis: EmbeddedRedis, fleet: Fleet
) -> None:
    """Redis stopped for seconds mid-load, then restarted: everything committed arrives once, in order."""
    database = await recreate_database(servers, "caracal_e2e_redis")
    setup = await prepare(database, private_redis.url, "redis")
    workload = Workload(setup.engine, setup.streams)
    try:
        workload.start()
        fleet.start(setup.env, "redis0")
        await wait_for_progress(setup, 0, fleet, workload)
        await asyncio.sleep(1.0)
        port = private_redis.port
        await asyncio.to_thread(private_redis.stop)
        outage = time.monotonic()
        await asyncio.sleep(4.0)
        private_redis.port = port  # same address, same data dir: AOF brings the streams back
        await asyncio.to_thread(private_redis.start)
        await setup.redis.connection_pool.disconnect()  # its connections died with the server
        assert workload.committed_since(outage) > 10, "no writes during the outage"
        await wait_until("writes after the restart", writes_since(workload, time.monotonic()), 30, fleet)
        await verify_delivery(setup, workload, fleet)
        async with setup.engine.connect() as conn:
            query = text("SELECT count(*) FROM event_outbox WHERE attempts > 1")
            retried = (await conn.execute(query)).scalar_one()
        assert retried, f"the dispatcher never saw the outage\n{fleet.tails()}"
    finally:
        await close(setup)


@pytest.mark.e2e
async def test_postgres_restart_loses_and_repeats_nothing(
    servers: Servers, private_postgres: EmbeddedPostgres, fleet: Fleet
) -> None:
    """Postgres restarted mid-load: events of every acknowledged commit arrive once, in order."""
    setup = await prepare(private_postgres.url, servers.redis_url, f"pg{random.randrange(10**6)}")
    workload = Workload(setup.engine, setup.streams)
    try:
        workload.start()
        fleet.start(setup.env, "pg0")
        await wait_for_progress(setup, 0, fleet, workload)
        await asyncio.sleep(1.0)
        await asyncio.to_thread(private_postgres.restart)
        back = time.monotonic()
        await wait_until("writes after the restart", writes_since(workload, back), 30, fleet)
        verdict = await verify_delivery(setup, workload, fleet)
        outcomes = Counter(t.outcome for t in workload.history)
        assert outcomes["unknown"] + outcomes["failed"], f"the restart interrupted no transaction: {outcomes}"
        print(f"postgres restart: {verdict.report()}; transactions {dict(outcomes)}")
    finally:
        await close(setup)


async def owners(engine: AsyncEngine) -> dict[str, list[str]]:
    """Per stream, the runs of workers that marked its rows delivered, in (txid, seq) order."""
    async with engine.connect() as conn:
        query = text(
            "SELECT stream_name, locked_by FROM event_outbox"
            " WHERE dispatched_at IS NOT NULL ORDER BY txid, seq"
        )
        runs: dict[str, list[str]] = {}
        for stream, worker in await conn.execute(query):
            run = runs.setdefault(stream, [])
            if not run or run[-1] != worker:
                run.append(worker)
        return runs


@pytest.mark.e2e
async def test_streams_have_one_publisher_among_three_and_a_killed_ones_are_taken_over(
    servers: Servers, fleet: Fleet
) -> None:
    """Three dispatchers: one publisher per stream; when it is killed another resumes within 5 s."""
    database = await recreate_database(servers, "caracal_e2e_fleet")
    setup = await prepare(database, servers.redis_url, "fleet")
    workload = Workload(setup.engine, setup.streams)
    try:
        workload.start()
        for n in range(3):
            fleet.start(setup.env, f"fleet{n}")
        await wait_for_progress(setup, 0, fleet, workload)

        async def every_stream_owned() -> bool:
            return sorted(await owners(setup.engine)) == sorted(setup.streams)

        await wait_until("every stream has a publisher", every_stream_owned, 20, fleet)
        runs = await owners(setup.engine)
        assert all(len(run) == 1 for run in runs.values()), f"streams published by several: {runs}"
        victim = runs[setup.streams[0]][0]
        last = {s: (await setup.redis.xrevrange(s, count=1))[0][0].decode() for s in setup.streams}
        assert fleet.by_worker[victim].stop(signal.SIGKILL) == -signal.SIGKILL
        killed = time.monotonic()
        markers = await workload.one_per_stream()

        async def markers_published() -> bool:
            since = [await setup.redis.xrange(s, min=f"({last[s]}") for s in setup.streams]
            found = {fields[b"outbox_id"].decode() for entries in since for _, fields in entries}
            return set(markers.values()) <= found

        deadline = 5.0 - (time.monotonic() - killed)
        await wait_until("delivery after the kill", markers_published, deadline, fleet, every=0.02)
        took = time.monotonic() - killed
        await wait_until("writes after the takeover", writes_since(workload, killed), 20, fleet)
        await verify_delivery(setup, workload, fleet)
        runs = await owners(setup.engine)
        for stream, run in runs.items():
            assert len(run) == len(set(run)), f"{stream} went back and forth between publishers: {run}"
            assert len(run) <= 2 and (len(run) == 1 or run[0] == victim), f"{stream}: {run}"
        assert len(runs[setup.streams[0]]) == 2, f"nobody took over from {victim}: {runs}"
        stats = [await setup.redis.hgetall(stats_key(s)) for s in setup.streams]
        skipped = [int(s.get(b"duplicates_skipped", 0)) for s in stats]
        assert skipped == [0, 0, 0], f"entries sent twice (publishers at once?): {stats}"
        print(f"fleet: {victim} killed; streams taken over in {took:.2f}s")
    finally:
        await close(setup)
