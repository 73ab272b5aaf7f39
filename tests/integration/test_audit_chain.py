"""The admin audit chain: rows sealed after commit in commit order, in batches, by one sealer at a time;
`caracal audit verify` names every edited, deleted or reordered sealed row and every bad checkpoint."""

from __future__ import annotations

import asyncio
import sys
from dataclasses import replace
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from caracal.audit_chain import GENESIS, SEAL_BATCH, canonical_content, link, seal_batch
from caracal.audit_verify import Finding, verify_chain
from caracal.cli import main
from caracal.db.engine import create_engine
from caracal.domain.audit import audit_row, insert_audit_rows
from caracal.domain.context import Caller
from caracal.settings import KeyRing, Settings
from caracal_reaper.jobs import AUDIT_SEAL
from caracal_reaper.runner import Reaper
from tests.integration.api_helpers import make_zone
from tests.support import service_env

KEY = bytes.fromhex("5a" * 32)
RING = KeyRing((("default", KEY),))  # AUDIT_HMAC_KEY=<KEY_HEX>: a bare key is the id `default`
KEY_HEX = "5a" * 32
NOBODY = Caller(None, "req-test")


async def _write(engine: AsyncEngine, count: int, action: str = "POST /v1/zones") -> list[str]:
    rows = [
        audit_row(NOBODY, action=action, method="POST", path="/v1/zones", status_code=201)
        for _ in range(count)
    ]
    async with engine.begin() as conn:
        await insert_audit_rows(conn, rows)
    return [row["id"] for row in rows]


async def _seal(engine: AsyncEngine) -> int:
    sealed = 0
    while True:
        async with engine.begin() as conn:
            report = await seal_batch(conn, RING)
        sealed += report.sealed
        if not report.more:
            return sealed


async def _sql(engine: AsyncEngine, *statements: str) -> None:
    async with engine.begin() as conn:
        for statement in statements:
            await conn.execute(text(statement))


async def _chain(engine: AsyncEngine) -> list[Any]:
    async with engine.connect() as conn:
        query = (
            "SELECT id, chain_seq, mac FROM admin_audit_events WHERE chain_seq IS NOT NULL ORDER BY chain_seq"
        )
        return list((await conn.execute(text(query))).all())


async def _verify_command(env: dict[str, str]) -> tuple[int, str]:
    """`caracal audit verify` as a person runs it: exit code and everything it printed."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "caracal.cli",
        "audit",
        "verify",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 60)
    return int(process.returncode or 0), output.decode()


async def _findings(settings: Settings) -> list[Finding]:
    assert settings.database_url is not None
    return await verify_chain(settings.database_url, RING, lambda _line: None)


async def test_mutations_are_sealed_after_commit_into_a_linked_chain(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine, settings: Settings
) -> None:
    """Each API mutation's row gets the next chain_seq and mac = HMAC(key, previous mac || content)."""
    for n in range(3):
        await make_zone(client, admin, name=f"z{n}")
    assert await _seal(engine) == 3
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT id, request_id, actor_id, actor_name, actor_scope, action, method, path, zone_id,"
                    " entity_type, entity_id, status_code, payload_json::text AS payload, occurred_at,"
                    " sealed_at, chain_seq, mac FROM admin_audit_events ORDER BY chain_seq"
                )
            )
        ).all()
    assert [r.chain_seq for r in rows] == [1, 2, 3]
    previous = GENESIS
    for row in rows:
        assert row.mac == link(KEY, previous, canonical_content(row))
        previous = row.mac
    assert await _findings(settings) == []


async def test_sealer_waits_for_a_running_transaction_and_then_follows_commit_order(
    engine: AsyncEngine, settings: Settings
) -> None:
    """A row whose transaction is still open holds back every later row; once it commits, rows are
    chained in transaction order, the open one first."""
    other = create_engine(settings, pool_size=1)
    try:
        async with other.connect() as slow:
            await slow.begin()
            await insert_audit_rows(slow, [audit_row(NOBODY, action="slow")])
            await _write(engine, 1, action="fast")
            assert await _seal(engine) == 0
            await slow.commit()
    finally:
        await other.dispose()
    assert await _seal(engine) == 2
    async with engine.connect() as conn:
        actions = (
            await conn.execute(text("SELECT action FROM admin_audit_events ORDER BY chain_seq"))
        ).scalars()
        assert list(actions) == ["slow", "fast"]


async def test_sealer_works_in_batches_of_a_thousand_and_checkpoints_the_head(engine: AsyncEngine) -> None:
    """2500 rows: two full batches say more work remains, the third does not; a checkpoint names the head."""
    await _write(engine, 2500)
    reports = []
    for _ in range(3):
        async with engine.begin() as conn:
            reports.append(await seal_batch(conn, RING))
    assert [(r.sealed, r.more) for r in reports] == [(SEAL_BATCH, True), (SEAL_BATCH, True), (500, False)]
    assert reports[0].checkpoint == SEAL_BATCH  # the first checkpoint is due at once
    assert reports[2].checkpoint is None  # the next one only after CHECKPOINT_EVERY_S
    async with engine.connect() as conn:
        head = (await conn.execute(text("SELECT max(chain_seq) FROM admin_audit_events"))).scalar_one()
        assert head == 2500


async def test_two_reapers_at_once_seal_each_row_once(
    engine: AsyncEngine, settings: Settings, redis: Redis
) -> None:
    """The sealer job under its advisory lock: two reapers racing leave one chain without gaps."""
    await _write(engine, 1500)
    keyed = replace(settings, audit_hmac_key=RING)
    second = create_engine(settings, pool_size=1)
    try:
        reapers = [Reaper(keyed, e, redis, [AUDIT_SEAL]) for e in (engine, second)]
        await asyncio.gather(*(r.run_job(AUDIT_SEAL) for r in reapers))
        await asyncio.gather(*(r.run_job(AUDIT_SEAL) for r in reapers))
    finally:
        await second.dispose()
    assert [row.chain_seq for row in await _chain(engine)] == list(range(1, 1501))


async def test_sealer_job_does_nothing_without_a_key(
    engine: AsyncEngine, settings: Settings, redis: Redis
) -> None:
    await _write(engine, 2)
    reaper = Reaper(replace(settings, audit_hmac_key=None), engine, redis, [AUDIT_SEAL])
    report = await reaper.run_job(AUDIT_SEAL)
    assert report.changed == 0 and await _chain(engine) == []


async def test_verify_names_an_edited_row(engine: AsyncEngine, settings: Settings) -> None:
    ids = await _write(engine, 5)
    await _seal(engine)
    await _sql(engine, f"UPDATE admin_audit_events SET actor_name = 'mallory' WHERE id = '{ids[2]}'")
    assert [(f.kind, f.chain_seq, f.row_id) for f in await _findings(settings)] == [("edited", 3, ids[2])]


async def test_verify_names_a_row_whose_mac_was_rewritten(engine: AsyncEngine, settings: Settings) -> None:
    """Only that row: the next one still follows from the MAC the edited row should have."""
    ids = await _write(engine, 4)
    await _seal(engine)
    await _sql(engine, f"UPDATE admin_audit_events SET mac = '\\x00'::bytea || mac WHERE id = '{ids[1]}'")
    assert [(f.kind, f.chain_seq, f.row_id) for f in await _findings(settings)] == [("edited", 2, ids[1])]


async def test_verify_names_a_deleted_row(engine: AsyncEngine, settings: Settings) -> None:
    ids = await _write(engine, 5)
    await _seal(engine)
    await _sql(engine, f"DELETE FROM admin_audit_events WHERE id = '{ids[1]}'")
    found = await _findings(settings)
    assert [(f.kind, f.chain_seq) for f in found] == [("deleted", 2)]
    assert "2 are missing" in found[0].detail or "rows 2 are" in found[0].detail


async def test_verify_names_both_rows_of_a_swap(engine: AsyncEngine, settings: Settings) -> None:
    """Two rows' chain_seq exchanged: both are reordered, each with the position it was sealed at;
    the row after them, which only looks out of step, is not named."""
    ids = await _write(engine, 6)
    await _seal(engine)
    await _sql(
        engine,
        "UPDATE admin_audit_events SET chain_seq = -3 WHERE chain_seq = 3",
        "UPDATE admin_audit_events SET chain_seq = 3 WHERE chain_seq = 4",
        "UPDATE admin_audit_events SET chain_seq = 4 WHERE chain_seq = -3",
    )
    found = await _findings(settings)
    assert [(f.kind, f.chain_seq, f.row_id) for f in found] == [
        ("reordered", 3, ids[3]),
        ("reordered", 4, ids[2]),
    ]
    assert found[0].detail == "it was sealed at chain_seq 4"


async def test_verify_names_a_tail_cut_off_after_a_checkpoint(
    engine: AsyncEngine, settings: Settings
) -> None:
    """Deleting the newest rows leaves no gap, but the checkpoint names a row that is gone."""
    await _write(engine, 3)
    await _seal(engine)  # the first checkpoint names chain_seq 3
    await _sql(engine, "DELETE FROM admin_audit_events WHERE chain_seq = 3")
    assert [(f.kind, f.chain_seq) for f in await _findings(settings)] == [("checkpoint", 3)]


async def test_verify_names_an_edited_checkpoint(engine: AsyncEngine, settings: Settings) -> None:
    await _write(engine, 2)
    await _seal(engine)
    await _sql(engine, "UPDATE admin_audit_checkpoints SET created_at = created_at - interval '1 day'")
    found = await _findings(settings)
    assert [(f.kind, f.chain_seq) for f in found] == [("checkpoint", 2)]
    assert "signature" in found[0].detail


async def test_caracal_audit_verify_exits_0_when_intact_and_1_naming_the_row_when_not(
    engine: AsyncEngine, settings: Settings
) -> None:
    """The command reads DATABASE_URL and AUDIT_HMAC_KEY, says what it does, and exits 0 or 1."""
    ids = await _write(engine, 3)
    await _seal(engine)
    assert settings.database_url is not None and settings.redis_url is not None
    env = service_env(settings.database_url, settings.redis_url, AUDIT_HMAC_KEY=KEY_HEX)
    intact = await _verify_command(env)
    assert intact[0] == 0, intact[1]
    assert "pass 1" in intact[1] and "the chain is intact" in intact[1]
    await _sql(engine, f"UPDATE admin_audit_events SET status_code = 200 WHERE id = '{ids[0]}'")
    broken = await _verify_command(env)
    assert broken[0] == 1
    assert f"EDITED: chain_seq 1, row {ids[0]}" in broken[1]
    no_key = {k: v for k, v in env.items() if k != "AUDIT_HMAC_KEY"}
    refused = await _verify_command(no_key)
    assert refused[0] == 2 and "AUDIT_HMAC_KEY" in refused[1]


@pytest.mark.parametrize("argv", [["audit"], ["migrate", "verify"]])
def test_audit_needs_exactly_its_verify_subcommand(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
