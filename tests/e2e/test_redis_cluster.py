"""The outbox guarantees, the API's limits and hints, and a master's failover, on a real Redis Cluster."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Iterator
from functools import partial
from pathlib import Path

import pytest
import pytest_asyncio
from redis.crc import key_slot
from sqlalchemy import text

from caracal.db.engine import create_engine
from caracal.db.migrate import run_migrations
from caracal.events import CHANGES, hwm_key, stats_key
from caracal.outbox import WAKE_CHANNEL, record_event
from caracal.redis_client import connect
from caracal.settings import Settings, load_settings
from caracal.status import gather
from caracal_dispatcher.__main__ import publisher_options
from caracal_dispatcher.dispatcher import Dispatcher
from caracal_dispatcher.leases import StreamLeases
from caracal_dispatcher.publisher import Replication, StreamPublisher
from tests.conftest import recreate_database
from tests.e2e.redis_cluster import ClusterNode, LocalCluster
from tests.e2e.test_outbox_guarantees import (
    Fleet,
    Setup,
    close,
    verify_delivery,
    wait_for_progress,
    wait_until,
    writes_since,
)
from tests.e2e.test_processes import call
from tests.e2e.total_queue import WRITERS, Workload
from tests.support import Servers, Service, eventually, service_env, start_service, wait_ready

pytestmark = pytest.mark.e2e
THIRDS = (5461, 10923)  # `redis-cli --cluster create` gives each of three masters a third of the slots


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    local = LocalCluster(tmp_path_factory.mktemp("redis-cluster"))
    try:
        local.start()
        yield local
    finally:
        local.stop()


@pytest.fixture
def fleet(logdir: Path) -> Iterator[Fleet]:
    dispatchers = Fleet(logdir)
    yield dispatchers
    dispatchers.stop_all()


def spread_streams(tag: str) -> tuple[str, ...]:
    """Three stream names of this test, one in each third of the slots (so on three masters)."""
    found: dict[int, str] = {}
    for n in range(1000):
        name = f"caracal.e2e.cluster.{tag}.{n}"
        found.setdefault(sum(key_slot(name.encode()) >= edge for edge in THIRDS), name)
        if len(found) == 3:
            return tuple(found[third] for third in range(3))
    raise AssertionError("no names spread over the slots")


async def prepare(servers: Servers, cluster: LocalCluster, tag: str, **env: str) -> Setup:
    database = await recreate_database(servers, f"caracal_e2e_cluster_{tag}")
    base = service_env(database, cluster.url, CARACAL_OUTBOX_POLL_MS="50", **env)
    engine = create_engine(load_settings(base), pool_size=WRITERS + 3)
    await run_migrations(engine)
    return Setup(base, engine, connect(cluster.url), spread_streams(tag))


@pytest_asyncio.fixture
async def api_pair(
    servers: Servers, cluster: LocalCluster, logdir: Path
) -> AsyncIterator[tuple[list[Service], dict[str, str]]]:
    """Two API processes, a reaper, and a dispatcher that only a wake-up hint can hurry (its poll is
    10 minutes); and their environment."""
    database = await recreate_database(servers, "caracal_e2e_cluster_api")
    env = service_env(
        database,
        cluster.url,
        API_V1_RATE_LIMIT_PER_MIN="20",
        CARACAL_AUTH_CACHE_TTL_MS="60000",  # a revocation reaches the other replica by broadcast only
        CARACAL_OUTBOX_POLL_MS="600000",
    )
    services = [start_service("api", env, logdir, tag=f"-cluster{n}") for n in range(2)]
    try:
        for service in services:
            await asyncio.to_thread(wait_ready, service)
        services += [start_service(kind, env, logdir, tag="-cluster") for kind in ("dispatcher", "reaper")]
        yield services, env
    finally:
        for service in services:  # all drain at once, then each is waited for
            service.process.terminate()
        for service in services:
            service.stop()


async def test_outbox_guarantees_hold_with_streams_on_three_masters(
    servers: Servers, cluster: LocalCluster, fleet: Fleet
) -> None:
    """Every committed event once, in order, with the streams (and each mark in its stream's slot)
    on different masters of the cluster."""
    setup = await prepare(servers, cluster, "spread", CARACAL_OUTBOX_BATCH="8")
    workload = Workload(setup.engine, setup.streams)
    try:
        workload.start()
        fleet.start(setup.env, "cluster0")
        await wait_for_progress(setup, 0, fleet, workload)
        verdict = await verify_delivery(setup, workload, fleet)
        masters = {stream: cluster.master_of(stream) for stream in setup.streams}
        assert len({master.port for master in masters.values()}) == 3, masters
        for stream, master in masters.items():
            assert master.cli("cluster", "keyslot", hwm_key(stream)) == master.cli(
                "cluster", "keyslot", stream
            )
            assert master.cli("exists", stream, hwm_key(stream)).strip() == "2", f"{stream} not on {master}"
        print(f"cluster: {verdict.report()}")
    finally:
        await close(setup)


def someone_listens_for_hints(cluster: LocalCluster) -> bool:
    """Whether any node has a subscriber of the wake-up channel (each node counts its own clients)."""
    replies = [node.cli("pubsub", "numsub", WAKE_CHANNEL).split() for node in cluster.live]
    return sum(int(reply[1]) for reply in replies) > 0


async def change_for(cluster: LocalCluster, entity_id: str) -> bool:
    redis = connect(cluster.url, decode_responses=True)
    try:
        return any(fields.get("entity_id") == entity_id for _, fields in await redis.xrange(CHANGES))
    finally:
        await redis.aclose()


async def test_api_limits_hints_and_broadcasts_work_on_a_cluster(
    cluster: LocalCluster, api_pair: tuple[list[Service], dict[str, str]]
) -> None:
    """Against the cluster: a commit's wake-up hint gets its event out at once, a revocation reaches
    the other replica by broadcast, the /v1 rate limit answers 429 once the window is full, and
    `caracal status` reads the streams' and the reaper's figures."""
    (first, second, *_), env = api_pair
    await eventually(
        lambda: someone_listens_for_hints(cluster), "the dispatcher listening for hints", within=20
    )
    for name in ("before", "hinted"):  # the first may meet the dispatcher's first poll; the second cannot
        status, zone = await asyncio.to_thread(call, first, "POST", "/v1/zones", {"name": f"Cluster {name}"})
        assert status == 201, zone
        zone_id: str = zone["id"]
        took = await eventually(partial(change_for, cluster, zone_id), f"{name} zone's event", within=5)
    assert took < 2.0, f"the hinted event took {took:.2f}s"

    status, created = await asyncio.to_thread(
        call, first, "POST", "/v1/admin-tokens", {"name": "c", "scope": "global"}
    )
    assert status == 201
    assert (await asyncio.to_thread(call, second, "GET", "/v1/zones", None, created["token"]))[0] == 200
    assert (await asyncio.to_thread(call, first, "DELETE", f"/v1/admin-tokens/{created['id']}"))[0] == 204

    async def refused() -> bool:
        return (await asyncio.to_thread(call, second, "GET", "/v1/zones", None, created["token"]))[0] == 401

    await eventually(refused, "the revocation reaching the other replica", within=2)

    # 41 requests hold 21 in one window even if a minute boundary falls among them
    statuses = [(await asyncio.to_thread(call, second, "GET", "/v1/zones"))[0] for _ in range(41)]
    assert 429 in statuses, statuses
    assert statuses.index(429) >= 15, statuses  # not before the limit (20, minus the requests above)

    settings = load_settings(env)
    await eventually(partial(reaper_reported, settings), "the reaper's figures in Redis", within=10)
    status = await gather(settings)
    assert status.redis == "ok", status.redis
    assert next(s.length for s in status.streams if s.stream == CHANGES) >= 2


async def test_a_batch_no_replica_confirmed_stays_undelivered_and_its_retry_adds_nothing_twice(
    servers: Servers, cluster: LocalCluster
) -> None:
    """WAIT on, the stream's replica stopped: the batch reaches the master but its rows stay
    undelivered (a failed try); once the replica is back the retry marks them, adding no entry."""
    setup = await prepare(servers, cluster, "unconfirmed")
    stream = setup.streams[1]
    settings = load_settings(setup.env)
    publisher = StreamPublisher(
        connect(cluster.url, **publisher_options(cluster.url, settings)),
        settings.streams_hmac_key,
        0,
        replication=Replication(1, 200),
    )
    dispatcher = Dispatcher(settings, publisher, StreamLeases(str(settings.database_url)))
    replica = cluster.replica_of(cluster.master_of(stream))
    assert replica.process is not None
    try:
        async with setup.engine.begin() as conn:
            ids = [await record_event(conn, stream, {"n": n}) for n in range(3)]
        replica.process.send_signal(signal.SIGSTOP)
        try:
            await dispatcher.iteration()
        finally:
            replica.process.send_signal(signal.SIGCONT)
        assert await _delivery(setup, ids) == [(None, 1, True)] * 3
        assert await setup.redis.xlen(stream) == 3  # the master has them; no replica confirmed them
        async with setup.engine.begin() as conn:
            await conn.execute(text("UPDATE event_outbox SET available_at = now()"))
        await dispatcher.iteration()
        assert [(bool(at), tries) for at, tries, _ in await _delivery(setup, ids)] == [(True, 2)] * 3
        assert await setup.redis.xlen(stream) == 3
        assert int(await setup.redis.hget(stats_key(stream), "duplicates_skipped") or 0) == 3
    finally:
        await dispatcher.leases.close()
        await publisher.redis.aclose()
        await close(setup)


async def _delivery(setup: Setup, ids: list[str]) -> list[tuple[object, int, bool]]:
    """Per outbox id: when it was delivered, its tries, whether its last error says NotReplicated."""
    async with setup.engine.connect() as conn:
        query = text("SELECT id, dispatched_at, attempts, last_error FROM event_outbox")
        rows = {r[0]: (r[1], r[2], "NotReplicated" in (r[3] or "")) for r in await conn.execute(query)}
    return [rows[i] for i in ids]


async def test_master_killed_under_load_with_replica_promoted_loses_and_repeats_nothing(
    servers: Servers, cluster: LocalCluster, fleet: Fleet
) -> None:
    """WAIT on: a stream's replica stalls (so its master holds entries the replica lacks), the master
    is SIGKILLed and the replica promoted; the dispatcher re-sends what the replica never got, once."""
    setup = await prepare(
        servers, cluster, "failover", CARACAL_OUTBOX_WAIT_REPLICAS="1", CARACAL_OUTBOX_WAIT_TIMEOUT_MS="300"
    )
    victim = cluster.master_of(setup.streams[0])
    replica = cluster.replica_of(victim)
    workload = Workload(setup.engine, setup.streams)
    try:
        workload.start()
        fleet.start(setup.env, "failover0")
        await wait_for_progress(setup, 0, fleet, workload)
        # The replica stops, and so does its link: what the master writes from now on reaches no
        # replica. Writes pause meanwhile, so no batch is half-confirmed when the replica stops
        # (its retries would then add nothing new, only skip what the master has).
        assert replica.process is not None
        victim.cli("client", "pause", "10000", "write")
        await eventually(partial(acknowledged_all, victim), "the replica acknowledging everything", 5)
        replica.process.send_signal(signal.SIGSTOP)
        victim.cli("client", "kill", "type", "replica")
        cut = int(victim.cli("xlen", setup.streams[0]))
        victim.cli("client", "unpause")
        await wait_until(
            "entries only the master holds", lambda: _grew(victim, setup.streams[0], cut), 20, fleet
        )
        held = int(victim.cli("xlen", setup.streams[0]))
        victim.kill()
        replica.process.send_signal(signal.SIGCONT)
        promoted_had = int(replica.session("READONLY", f"XLEN {setup.streams[0]}")[-1])
        replica.cli("cluster", "failover", "takeover")
        assert promoted_had < held, f"the replica had every entry ({promoted_had} of {held})"
        victim.start()  # rejoins as the promoted one's replica, so WAIT can confirm again
        await asyncio.to_thread(cluster.wait_healthy)
        await wait_until("writes after the failover", writes_since(workload, time.monotonic()), 30, fleet)
        verdict = await verify_delivery(setup, workload, fleet)
        async with setup.engine.connect() as conn:
            query = text("SELECT count(*) FROM event_outbox WHERE stream_name = :s AND attempts > 1")
            retried = (await conn.execute(query, {"s": setup.streams[0]})).scalar_one()
        assert retried, f"no batch of {setup.streams[0]} was held back\n{fleet.tails()}"
        print(f"failover: {verdict.report()}; the promoted replica lacked {held - promoted_had} entries")
    finally:
        await close(setup)


async def _grew(node: ClusterNode, stream: str, since: int) -> bool:
    return int(node.cli("xlen", stream)) > since


def acknowledged_all(master: ClusterNode) -> bool:
    """Whether the master's replica has acknowledged its whole replication stream."""
    info = dict(line.split(":", 1) for line in master.cli("info", "replication").splitlines() if ":" in line)
    replica = dict(part.split("=", 1) for part in info.get("slave0", "").strip().split(",") if "=" in part)
    return "offset" in replica and int(replica["offset"]) >= int(info["master_repl_offset"])


async def reaper_reported(settings: Settings) -> bool:
    status = await gather(settings)
    return any(run["runs"] for run in status.reaper.get("last_runs", {}).values())
