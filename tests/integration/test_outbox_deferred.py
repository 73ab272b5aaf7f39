"""A request's write keeps its events and writes them with its audit row in one statement
(caracal.outbox.defer_events): the rows are those direct recording writes, in the order recorded."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from caracal.db.engine import transaction
from caracal.domain.audit import audit_row, insert_audit_row_with_events
from caracal.domain.context import Caller
from caracal.outbox import defer_events, record_event, record_events, take_deferred

STREAM = "caracal.test.deferred"
_ROWS = text(
    "SELECT id, stream_name, payload_json, request_id, txid::text AS txid, seq"
    " FROM event_outbox WHERE stream_name = :stream ORDER BY seq"
)
_AUDIT_TXID = text("SELECT txid::text FROM admin_audit_events WHERE id = :id")


async def _record(conn: AsyncConnection) -> list[str]:
    first = await record_event(conn, STREAM, {"n": 1, "zone_id": None}, request_id="req-1")
    many = await record_events(conn, STREAM, [{"n": 2}, {"n": 3, "flag": True}], request_id="req-1")
    last = await record_event(conn, STREAM, {"n": 4, "name": "ünïcode"}, request_id="req-1")
    return [first, *many, last]


async def _stored(conn: AsyncConnection) -> list[Any]:
    return list((await conn.execute(_ROWS, {"stream": STREAM})).all())


async def test_kept_events_are_written_with_the_audit_row_as_direct_recording_writes_them(
    engine: AsyncEngine,
) -> None:
    async with transaction(engine) as conn:
        direct_ids = await _record(conn)
        direct = await _stored(conn)
        await conn.execute(text("DELETE FROM event_outbox WHERE stream_name = :stream"), {"stream": STREAM})
    row = audit_row(Caller(None, "req-1"), action="POST /v1/test")
    async with transaction(engine) as conn:
        defer_events(conn)
        kept_ids = await _record(conn)
        assert await _stored(conn) == [], "kept events are not written one by one"
        await insert_audit_row_with_events(conn, row, take_deferred(conn))
        kept = await _stored(conn)
        audit_txid = (await conn.execute(_AUDIT_TXID, {"id": row["id"]})).scalar_one()
    assert [r.id for r in kept] == kept_ids, "written in the order recorded (seq)"
    assert [(r.stream_name, r.payload_json, r.request_id) for r in kept] == [
        (r.stream_name, r.payload_json, r.request_id) for r in direct
    ]
    assert len(direct_ids) == len(kept_ids) == 4
    assert {r.txid for r in kept} == {audit_txid}, "the events and the audit row are one transaction's"


async def test_taking_the_kept_events_ends_keeping_and_a_rollback_loses_them_with_the_write(
    engine: AsyncEngine,
) -> None:
    async def failing_write() -> None:
        async with transaction(engine) as conn:
            defer_events(conn)
            await record_event(conn, STREAM, {"n": 1})
            assert len(take_deferred(conn)) == 1
            assert take_deferred(conn) == [], "taken once"
            await record_event(conn, STREAM, {"n": 2})  # direct again
            assert [r.payload_json for r in await _stored(conn)] == [{"n": 2}]
            raise RuntimeError("the write fails")

    with pytest.raises(RuntimeError, match="the write fails"):
        await failing_write()
    async with transaction(engine) as conn:
        assert await _stored(conn) == []
