"""The outbox dispatcher in-process, over real Postgres and Redis: entries, order, duplicates, retries."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from caracal.embedded import EmbeddedRedis
from caracal.events import hwm_key, stats_key, verify
from caracal.outbox import record_event
from caracal.settings import Settings
from caracal_dispatcher.dispatcher import Dispatcher
from caracal_dispatcher.leases import StreamLeases
from caracal_dispatcher.publisher import StreamPublisher
from tests.support import HMAC_KEY_HEX, eventually

STREAM = "caracal.sessions.revoke"
OTHER = "caracal.policy.invalidate"

MakeDispatcher = Callable[..., Dispatcher]


@pytest_asyncio.fixture
async def make_dispatcher(
    settings: Settings, engine: AsyncEngine, redis: Redis
) -> AsyncIterator[MakeDispatcher]:
    """Dispatchers on the test's database, publishing to `publish_to` (the session's Redis by default)."""
    made: list[Dispatcher] = []

    def make(publish_to: Redis | None = None, **overrides: Any) -> Dispatcher:
        tuned = dataclasses.replace(settings, **overrides)
        publisher = StreamPublisher(publish_to or redis, tuned.streams_hmac_key, tuned.outbox_stream_maxlen)
        dispatcher = Dispatcher(tuned, publisher, StreamLeases(str(tuned.database_url)))
        made.append(dispatcher)
        return dispatcher

    yield make
    for dispatcher in made:
        await dispatcher.leases.close()


@pytest.fixture
def outage_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A Redis server of this test alone, started once (so it has a port and a data dir) and stopped."""
    server = EmbeddedRedis(tmp_path / "redis")
    server.start()
    server.stop()
    yield server
    server.destroy()


@pytest_asyncio.fixture
async def outage_client(outage_redis: EmbeddedRedis) -> AsyncIterator[Redis]:
    """A client of the stopped server that fails at once instead of retrying the connection."""
    client = Redis.from_url(
        outage_redis.url, socket_connect_timeout=1, socket_timeout=2, retry=Retry(NoBackoff(), 0)
    )
    yield client
    await client.aclose()


async def publish(engine: AsyncEngine, stream: str, payloads: list[dict[str, Any]]) -> list[str]:
    """Record the events in one committed transaction; returns their outbox ids."""
    async with engine.begin() as conn:
        return [await record_event(conn, stream, payload) for payload in payloads]


async def stream_ids(redis: Redis, stream: str) -> list[str]:
    return [fields[b"outbox_id"].decode() for _, fields in await redis.xrange(stream)]


async def outbox_row(engine: AsyncEngine, outbox_id: str) -> Any:
    async with engine.connect() as conn:
        query = text(
            "SELECT attempts, available_at, available_at = 'infinity' AS infinite, dead_at,"
            " dispatched_at, last_error FROM event_outbox WHERE id = :id"
        )
        return (await conn.execute(query, {"id": outbox_id})).one()


async def db_now(engine: AsyncEngine) -> datetime:
    async with engine.connect() as conn:
        now: datetime = (await conn.execute(text("SELECT clock_timestamp()"))).scalar_one()
        return now


async def make_due(engine: AsyncEngine, *outbox_ids: str) -> None:
    """Let the backoff pass without waiting for it."""
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE event_outbox SET available_at = now() WHERE id = ANY(:ids)"),
            {"ids": list(outbox_ids)},
        )


async def pending_ids(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        query = text("SELECT id FROM event_outbox WHERE dispatched_at IS NULL")
        return set((await conn.execute(query)).scalars())


async def test_entry_is_flat_with_outbox_id_payload_and_verifying_signature(
    make_dispatcher: MakeDispatcher, engine: AsyncEngine, redis: Redis
) -> None:
    """An entry holds outbox_id and the payload's non-null values as strings, signed under the session key."""
    payload = {
        "zone_id": "z1",
        "session_id": "s1",
        "reason": "grant_revoked",
        "n": 3,
        "live": True,
        "x": None,
    }
    [outbox_id] = await publish(engine, STREAM, [payload])
    await make_dispatcher().iteration()
    [(_, raw)] = await redis.xrange(STREAM)
    fields = {k.decode(): v.decode() for k, v in raw.items()}
    assert set(fields) == {"outbox_id", "zone_id", "session_id", "reason", "n", "live", "_sig"}
    assert fields["outbox_id"] == outbox_id
    assert (fields["n"], fields["live"], fields["reason"]) == ("3", "true", "grant_revoked")
    assert verify(bytes.fromhex(HMAC_KEY_HEX), STREAM, fields)
    assert not verify(bytes.fromhex(HMAC_KEY_HEX), OTHER, fields)
    assert await pending_ids(engine) == set()


async def test_values_reach_the_stream_byte_for_byte(
    make_dispatcher: MakeDispatcher, engine: AsyncEngine, redis: Redis
) -> None:
    """Quotes, backslashes, newlines, non-ASCII and a long value arrive exactly and still verify."""
    tricky = 'Zürich "quoted" \\ back\nslash \t 🦊 ' + "x" * 5000
    [outbox_id] = await publish(engine, STREAM, [{"zone_id": "z1", "name": tricky, "empty": ""}])
    await make_dispatcher().iteration()
    [(_, raw)] = await redis.xrange(STREAM)
    fields = {k.decode(): v.decode() for k, v in raw.items()}
    assert fields["name"] == tricky
    assert fields["empty"] == ""
    assert fields["outbox_id"] == outbox_id
    assert verify(bytes.fromhex(HMAC_KEY_HEX), STREAM, fields)


async def test_rolled_back_transaction_leaves_no_row_and_no_entry(
    make_dispatcher: MakeDispatcher, engine: AsyncEngine, redis: Redis
) -> None:
    """An event recorded in a transaction that rolls back is never stored nor published."""
    async with engine.connect() as conn:
        trans = await conn.begin()
        await record_event(conn, STREAM, {"zone_id": "gone"})
        await trans.rollback()
    [kept] = await publish(engine, STREAM, [{"zone_id": "kept"}])
    async with engine.connect() as conn:
        rows = (await conn.execute(text("SELECT id FROM event_outbox"))).scalars().all()
    assert rows == [kept]
    await make_dispatcher().iteration()
    assert await stream_ids(redis, STREAM) == [kept]


async def test_stream_waits_for_an_older_open_transaction_then_follows_transaction_order(
    make_dispatcher: MakeDispatcher, engine: AsyncEngine, redis: Redis
) -> None:
    """A later transaction committed first is held back until the older one commits, then comes after it."""
    dispatcher = make_dispatcher()
    slow = await engine.connect()
    try:
        slow_tx = await slow.begin()
        first = await record_event(slow, STREAM, {"zone_id": "z", "session_id": "slow"})
        [second] = await publish(engine, STREAM, [{"zone_id": "z", "session_id": "fast"}])
        for _ in range(3):
            await dispatcher.iteration()
        assert await redis.xlen(STREAM) == 0, "published past a transaction still in progress"
        assert await pending_ids(engine) == {second}
        await slow_tx.commit()
    finally:
        await slow.close()
    await dispatcher.iteration()
    assert await stream_ids(redis, STREAM) == [first, second]
    async with engine.connect() as conn:
        keys = (await conn.execute(text("SELECT id FROM event_outbox ORDER BY txid, seq"))).scalars().all()
    assert keys == [first, second]


async def test_crash_between_publish_and_mark_is_reconciled_without_repeating_entries(
    make_dispatcher: MakeDispatcher, engine: AsyncEngine, redis: Redis
) -> None:
    """A batch published but not marked is marked delivered by the next dispatcher, never re-sent."""
    ids = await publish(engine, STREAM, [{"zone_id": "z", "session_id": f"s{i}"} for i in range(5)])
    crashed = make_dispatcher()
    await crashed.iteration()
    assert await stream_ids(redis, STREAM) == ids
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE event_outbox SET dispatched_at = NULL WHERE id = ANY(:ids)"), {"ids": ids}
        )
    await crashed.leases.close()
    [later] = await publish(engine, STREAM, [{"zone_id": "z", "session_id": "later"}])
    successor = make_dispatcher()
    await successor.iteration()
    await successor.iteration()
    assert await stream_ids(redis, STREAM) == [*ids, later]
    assert await pending_ids(engine) == set()
    stats = await redis.hgetall(stats_key(STREAM))
    assert int(stats.get(b"duplicates_skipped", 0)) == 0, "reconciliation should mark, not re-send"


async def test_republished_batch_is_kept_out_by_the_high_water_mark(
    make_dispatcher: MakeDispatcher, engine: AsyncEngine, redis: Redis
) -> None:
    """Rows sent again by the dispatcher that still holds the stream add no entry and end up delivered."""
    ids = await publish(engine, STREAM, [{"zone_id": "z", "session_id": f"s{i}"} for i in range(4)])
    dispatcher = make_dispatcher()
    await dispatcher.iteration()
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE event_outbox SET dispatched_at = NULL WHERE id = ANY(:ids)"), {"ids": ids}
        )
    [later] = await publish(engine, STREAM, [{"zone_id": "z", "session_id": "later"}])
    await dispatcher.iteration()
    assert await stream_ids(redis, STREAM) == [*ids, later]
    assert await pending_ids(engine) == set()


async def test_full_batch_is_followed_at_once_by_the_next(
    make_dispatcher: MakeDispatcher, engine: AsyncEngine, redis: Redis, settings: Settings
) -> None:
    """A full batch asks for no wait; the poll interval applies only once the outbox is drained."""
    ids = await publish(engine, STREAM, [{"zone_id": "z", "n": i} for i in range(12)])
    dispatcher = make_dispatcher(outbox_batch=5, outbox_batch_max=5)
    dispatcher.drain_budget_s = 0.0  # one batch per iteration, so each iteration's answer shows
    delays = []
    for _ in range(3):
        delays.append(await dispatcher.iteration())
    assert delays == [0.0, 0.0, settings.outbox_poll_ms / 1000]
    assert await stream_ids(redis, STREAM) == ids


async def test_one_iteration_drains_full_batches_back_to_back(
    make_dispatcher: MakeDispatcher, engine: AsyncEngine, redis: Redis, settings: Settings
) -> None:
    """Within its time budget an iteration publishes batch after batch while they come back full."""
    ids = await publish(engine, STREAM, [{"zone_id": "z", "n": i} for i in range(23)])
    dispatcher = make_dispatcher(outbox_batch=5)
    assert await dispatcher.iteration() == settings.outbox_poll_ms / 1000
    assert await stream_ids(redis, STREAM) == ids
    assert await pending_ids(engine) == set()


async def entries_per_iteration(dispatcher: Dispatcher, redis: Redis, stream: str, rounds: int) -> list[int]:
    """How many entries each of `rounds` iterations added to the stream."""
    added = []
    for _ in range(rounds):
        before = await redis.xlen(stream)
        await dispatcher.iteration()
        added.append(await redis.xlen(stream) - before)
    return added


async def test_batch_doubles_on_a_backlog_up_to_its_cap_and_starts_small_after_a_short_one(
    make_dispatcher: MakeDispatcher, engine: AsyncEngine, redis: Redis
) -> None:
    """Full batches double the next one up to the cap; the short batch that ends the backlog resets it."""
    ids = await publish(engine, STREAM, [{"zone_id": "z", "n": i} for i in range(200)])
    dispatcher = make_dispatcher(outbox_batch=4, outbox_batch_max=32)
    dispatcher.drain_budget_s = 0.0  # one batch per iteration, so each batch's size shows
    assert await entries_per_iteration(dispatcher, redis, STREAM, 10) == [4, 8, 16, 32, 32, 32, 32, 32, 12, 0]
    assert await stream_ids(redis, STREAM) == ids
    later = await publish(engine, STREAM, [{"zone_id": "z", "n": i} for i in range(20)])
    assert await entries_per_iteration(dispatcher, redis, STREAM, 3) == [4, 8, 8]
    assert await stream_ids(redis, STREAM) == [*ids, *later]
    assert await pending_ids(engine) == set()


async def test_batch_starts_small_again_once_the_outbox_is_idle(
    make_dispatcher: MakeDispatcher, engine: AsyncEngine, redis: Redis
) -> None:
    """A backlog that ends on a full batch leaves a grown size; an idle poll takes it back to the start."""
    await publish(engine, STREAM, [{"zone_id": "z", "n": i} for i in range(4 + 8 + 16)])
    dispatcher = make_dispatcher(outbox_batch=4, outbox_batch_max=1024)
    dispatcher.drain_budget_s = 0.0
    assert await entries_per_iteration(dispatcher, redis, STREAM, 4) == [4, 8, 16, 0]
    await publish(engine, STREAM, [{"zone_id": "z", "n": i} for i in range(100)])
    assert await entries_per_iteration(dispatcher, redis, STREAM, 2) == [4, 8]


async def test_cap_below_the_start_size_keeps_batches_at_the_start_size(
    make_dispatcher: MakeDispatcher, engine: AsyncEngine, redis: Redis
) -> None:
    """CARACAL_OUTBOX_BATCH_MAX at or below CARACAL_OUTBOX_BATCH turns growth off."""
    await publish(engine, STREAM, [{"zone_id": "z", "n": i} for i in range(30)])
    dispatcher = make_dispatcher(outbox_batch=6, outbox_batch_max=2)
    dispatcher.drain_budget_s = 0.0
    assert await entries_per_iteration(dispatcher, redis, STREAM, 6) == [6, 6, 6, 6, 6, 0]


async def test_growing_batches_keep_each_streams_transaction_order(
    make_dispatcher: MakeDispatcher, engine: AsyncEngine, redis: Redis
) -> None:
    """Many transactions over two streams, drained with growing batches: each stream in (txid, seq) order."""
    expected: dict[str, list[str]] = {STREAM: [], OTHER: []}
    for tx in range(60):
        async with engine.begin() as conn:
            for n in range(tx % 7 + 1):
                stream = (STREAM, OTHER)[(tx + n) % 2]
                expected[stream].append(await record_event(conn, stream, {"zone_id": "z", "n": n}))
    dispatcher = make_dispatcher(outbox_batch=2, outbox_batch_max=16)
    await dispatcher.iteration()
    assert await pending_ids(engine) == set()
    for stream, ids in expected.items():
        assert await stream_ids(redis, stream) == ids
        async with engine.connect() as conn:
            query = text("SELECT id FROM event_outbox WHERE stream_name = :s ORDER BY txid, seq")
            assert (await conn.execute(query, {"s": stream})).scalars().all() == ids


async def test_rows_sent_again_inside_a_grown_batch_add_no_duplicates(
    make_dispatcher: MakeDispatcher, engine: AsyncEngine, redis: Redis
) -> None:
    """Published rows read again as part of a larger batch are skipped by the high-water mark."""
    ids = await publish(engine, STREAM, [{"zone_id": "z", "n": i} for i in range(120)])
    dispatcher = make_dispatcher(outbox_batch=4, outbox_batch_max=64)
    dispatcher.drain_budget_s = 0.0
    assert await entries_per_iteration(dispatcher, redis, STREAM, 4) == [4, 8, 16, 32]
    async with engine.begin() as conn:  # as if the marks of everything sent so far were lost
        await conn.execute(
            text("UPDATE event_outbox SET dispatched_at = NULL WHERE id = ANY(:ids)"), {"ids": ids[:60]}
        )
    # marks are lost only with the Postgres session that wrote them (they commit asynchronously), and
    # a lost session drops the dispatcher's position in the backlog with its leases
    dispatcher.positions.clear()
    assert await entries_per_iteration(dispatcher, redis, STREAM, 3) == [4, 56, 0]
    assert await stream_ids(redis, STREAM) == ids
    assert await pending_ids(engine) == set()
    stats = await redis.hgetall(stats_key(STREAM))
    assert int(stats[b"duplicates_skipped"]) == 60


async def test_stream_is_trimmed_to_about_its_maxlen(
    make_dispatcher: MakeDispatcher, engine: AsyncEngine, redis: Redis
) -> None:
    """With MAXLEN ~ 10, 500 entries leave a stream far shorter than 500 that ends with the newest."""
    ids = await publish(engine, STREAM, [{"zone_id": "z", "n": i} for i in range(500)])
    dispatcher = make_dispatcher(outbox_stream_maxlen=10, outbox_batch=100)
    for _ in range(6):
        await dispatcher.iteration()
    assert await pending_ids(engine) == set()
    length = await redis.xlen(STREAM)
    assert 10 <= length < 500
    assert (await stream_ids(redis, STREAM))[-1] == ids[-1]


async def test_stream_without_maxlen_keeps_every_entry(
    make_dispatcher: MakeDispatcher, engine: AsyncEngine, redis: Redis
) -> None:
    """With CARACAL_OUTBOX_STREAM_MAXLEN 0 nothing is trimmed: 300 events leave 300 entries."""
    ids = await publish(engine, STREAM, [{"zone_id": "z", "n": i} for i in range(300)])
    await make_dispatcher(outbox_stream_maxlen=0, outbox_batch=8, outbox_batch_max=64).iteration()
    assert await stream_ids(redis, STREAM) == ids


async def test_failed_publish_backs_off_exponentially_and_counts_only_real_tries(
    make_dispatcher: MakeDispatcher, engine: AsyncEngine, outage_client: Redis
) -> None:
    """Each failed try adds one attempt and moves available_at out by the jittered 2^attempts s."""
    dispatcher = make_dispatcher(publish_to=outage_client, outbox_max_attempts=5)
    [outbox_id] = await publish(engine, STREAM, [{"zone_id": "z"}])
    for attempts in (1, 2, 3):
        await make_due(engine, outbox_id)
        before = await db_now(engine)
        await dispatcher.iteration()
        after = await db_now(engine)
        row = await outbox_row(engine, outbox_id)
        ceiling = timedelta(seconds=2**attempts)
        assert row.attempts == attempts
        assert before + 0.7 * ceiling <= row.available_at <= after + ceiling
        assert row.dead_at is None and row.dispatched_at is None
        assert "Connection" in row.last_error
        for _ in range(3):
            await dispatcher.iteration()
        unchanged = await outbox_row(engine, outbox_id)
        assert (unchanged.attempts, unchanged.available_at) == (attempts, row.available_at)


async def test_event_is_dead_lettered_after_max_attempts_and_its_stream_moves_on(
    make_dispatcher: MakeDispatcher,
    engine: AsyncEngine,
    outage_redis: EmbeddedRedis,
    outage_client: Redis,
) -> None:
    """After max attempts the event is kept dead (available_at infinity); the event behind it is published."""
    dispatcher = make_dispatcher(publish_to=outage_client, outbox_max_attempts=2)
    [doomed] = await publish(engine, STREAM, [{"zone_id": "z", "session_id": "doomed"}])
    await dispatcher.iteration()
    [behind] = await publish(engine, STREAM, [{"zone_id": "z", "session_id": "behind"}])
    await make_due(engine, doomed)
    await dispatcher.iteration()
    dead = await outbox_row(engine, doomed)
    assert (dead.attempts, dead.infinite, dead.dispatched_at) == (2, True, None)
    assert dead.dead_at is not None
    assert (await outbox_row(engine, behind)).dead_at is None
    outage_redis.start()
    await make_due(engine, behind)
    await dispatcher.iteration()
    assert await stream_ids(outage_client, STREAM) == [behind]
    assert await pending_ids(engine) == {doomed}
    assert (await outbox_row(engine, doomed)).dead_at is not None


async def test_dead_letter_is_listed_counted_and_requeued_through_the_api(
    make_dispatcher: MakeDispatcher,
    engine: AsyncEngine,
    redis: Redis,
    outage_client: Redis,
    client: httpx.AsyncClient,
    admin: dict[str, str],
) -> None:
    """A dead event shows in /v1/outbox/dead, /metrics and /ready; requeued, it is published."""
    live = make_dispatcher()
    await live.iteration()  # what the fixtures recorded (the seeded token's change event)
    await live.leases.close()
    failing = make_dispatcher(publish_to=outage_client, outbox_max_attempts=1)
    [dead_id] = await publish(engine, STREAM, [{"zone_id": "z", "session_id": "s"}])
    await failing.iteration()
    await failing.leases.close()

    listed = await client.get("/v1/outbox/dead", headers=admin)
    assert listed.status_code == 200, listed.text
    [entry] = listed.json()
    assert (entry["id"], entry["stream_name"], entry["state"], entry["attempts"]) == (
        dead_id,
        STREAM,
        "dead",
        1,
    )
    metrics = (await client.get("/metrics")).text.splitlines()
    assert "caracal_api_outbox_dead_total 1" in metrics
    ready = await client.get("/ready")
    assert ready.status_code == 503
    assert ready.json() == {"ok": False, "error": "outbox_dead_messages", "deadCount": 1, "limit": 0}

    requeued = await client.post(f"/v1/outbox/{dead_id}/requeue", headers=admin)
    assert requeued.status_code == 200, requeued.text
    assert requeued.json()["state"] == "pending"
    assert (await client.post(f"/v1/outbox/{dead_id}/requeue", headers=admin)).status_code == 409
    await live.iteration()
    assert await stream_ids(redis, STREAM) == [dead_id]
    assert (await client.get("/v1/outbox/dead", headers=admin)).json() == []
    assert (await client.get("/ready")).status_code == 200


async def test_zone_scoped_token_cannot_see_dead_letters(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """/v1/outbox/dead answers 403 to a token limited to one zone."""
    zone = await client.post("/v1/zones", json={"name": "Acme"}, headers=admin)
    assert zone.status_code == 201, zone.text
    minted = await client.post(
        "/v1/admin-tokens",
        json={"name": "zoned", "scope": "zone", "zone_id": zone.json()["id"]},
        headers=admin,
    )
    assert minted.status_code == 201, minted.text
    answer = await client.get(
        "/v1/outbox/dead", headers={"Authorization": f"Bearer {minted.json()['token']}"}
    )
    assert answer.status_code == 403, answer.text


async def test_high_water_mark_of_another_database_hides_nothing(
    make_dispatcher: MakeDispatcher, engine: AsyncEngine, redis: Redis
) -> None:
    """A mark left in Redis by a wiped or replaced database (another origin) is ignored, not obeyed."""
    await redis.hset(hwm_key(STREAM), mapping={"tx": 10**15, "seq": 10**15, "origin": "another-database"})
    ids = await publish(engine, STREAM, [{"zone_id": "z", "n": i} for i in range(3)])
    await make_dispatcher().iteration()
    assert await stream_ids(redis, STREAM) == ids
    assert await pending_ids(engine) == set()


async def test_a_drain_cut_by_its_time_budget_continues_after_what_it_published(
    make_dispatcher: MakeDispatcher, engine: AsyncEngine, redis: Redis
) -> None:
    """Mid-backlog the next drain starts after the last published row; once caught up it reads from
    the beginning again, and a requeued event (a new txid) is never left behind."""
    ids = await publish(engine, STREAM, [{"zone_id": "z", "n": i} for i in range(40)])
    dispatcher = make_dispatcher(outbox_batch=8, outbox_batch_max=8)
    dispatcher.drain_budget_s = 0.0
    await dispatcher.iteration()
    assert dispatcher.positions.get(STREAM) is not None
    for _ in range(6):
        await dispatcher.iteration()
    assert await stream_ids(redis, STREAM) == ids
    assert STREAM not in dispatcher.positions  # caught up: the next read starts at the beginning
    [later] = await publish(engine, STREAM, [{"zone_id": "z", "n": "later"}])
    await dispatcher.iteration()
    assert await stream_ids(redis, STREAM) == [*ids, later]
    assert await pending_ids(engine) == set()


async def test_a_lease_session_left_busy_by_an_interrupted_call_is_replaced(settings: Settings) -> None:
    """The driver refuses a busy session ("another operation is in progress"); the liveness check
    takes that as a lost session and connects anew instead of failing every iteration after it."""
    leases = StreamLeases(str(settings.database_url))
    first = await leases.connection()
    busy = asyncio.create_task(first.fetchval("SELECT pg_sleep(2)"))
    await asyncio.sleep(0)  # one loop turn: the query is on the wire and the session is busy
    leases.suspect()
    try:
        second = await leases.connection()
        assert second is not first
        assert await second.fetchval("SELECT 1") == 1
    finally:
        busy.cancel()
        await asyncio.gather(busy, return_exceptions=True)
        await leases.close()


async def test_a_standby_looks_once_per_poll_interval_and_takes_over_a_released_stream(
    make_dispatcher: MakeDispatcher, engine: AsyncEngine, redis: Redis
) -> None:
    """Wake-up hints come with every commit, and the holder serves them; a dispatcher holding no
    lease only has to notice a holder gone, so it looks once per poll interval."""
    holder, standby = make_dispatcher(outbox_poll_ms=300), make_dispatcher(outbox_poll_ms=300)
    [first] = await publish(engine, STREAM, [{"zone_id": "z", "n": "first"}])
    await holder.iteration()
    [second] = await publish(engine, STREAM, [{"zone_id": "z", "n": "second"}])
    assert await standby.iteration() == pytest.approx(0.3, abs=0.05)  # looked, could not take it
    await holder.leases.close()  # the holder is gone: its session's leases with it
    looked_at = asyncio.get_running_loop().time()
    assert 0 < await standby.iteration() <= 0.3  # a hint now: not looked at again yet
    assert standby.leases.held == set() and await pending_ids(engine) == {second}

    async def taken_over() -> bool:
        await standby.iteration()
        return STREAM in standby.leases.held

    await eventually(taken_over, "the standby taking the released stream", within=5, poll=0.02)
    assert asyncio.get_running_loop().time() - looked_at >= 0.2
    assert await stream_ids(redis, STREAM) == [first, second]
