"""The one way to emit an event: an event_outbox row written in the caller's transaction."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from caracal.events import CHANGES, Scalar
from caracal.ids import new_id
from caracal.telemetry import current_traceparent

log = logging.getLogger("caracal.outbox")
WAKE_TIMEOUT_S = 0.5
WAKE_CHANNEL = "caracal:outbox:wake"


# key in Connection.info: while a request's write transaction holds a list here, events are kept in it
# and written with the transaction's audit row in one statement (`take_deferred`), not one by one
DEFERRED = "caracal.outbox_deferred"


def defer_events(conn: AsyncConnection) -> None:
    """Until `take_deferred`, `record_event(s)` on `conn` keep their rows for one final statement."""
    conn.info[DEFERRED] = []


def take_deferred(conn: AsyncConnection) -> list[dict[str, Any]]:
    """The rows kept since `defer_events`, in the order they were recorded; recording is direct again.
    The caller inserts them (`deferred_columns`) before it commits, or the events are lost."""
    return conn.info.pop(DEFERRED, None) or []


def deferred_columns(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Kept rows as the array parameters of INSERT_DEFERRED (one prepared form for any count)."""
    return {
        "e_ids": [r["id"] for r in rows],
        "e_streams": [r["stream_name"] for r in rows],
        "e_payloads": [json.dumps(r["payload_json"]) for r in rows],
        "e_request_ids": [r["request_id"] for r in rows],
        "e_traceparents": [r["traceparent"] for r in rows],
    }


# Events in one statement, in the order recorded: WITH ORDINALITY keeps it in `seq`, the stream's order
# (txid and seq come from the column defaults: the writing transaction, commit order).
# As text, so another statement can carry it as a data-modifying WITH clause (domain.audit does).
_EVENTS_FROM_ARRAYS = """
    INSERT INTO event_outbox (id, stream_name, payload_json, request_id, traceparent)
    SELECT e.id, e.stream, e.payload::jsonb, e.request_id, e.traceparent
      FROM unnest(CAST(:e_ids AS text[]), CAST(:e_streams AS text[]), CAST(:e_payloads AS text[]),
                  CAST(:e_request_ids AS text[]), CAST(:e_traceparents AS text[]))
           WITH ORDINALITY AS e(id, stream, payload, request_id, traceparent, n)
    {condition}
     ORDER BY e.n
"""
INSERT_DEFERRED = _EVENTS_FROM_ARRAYS.format(condition="")
# The same, writing the events only if the statement's CTE `written` returned a row (domain.audit)
INSERT_DEFERRED_IF_WRITTEN = _EVENTS_FROM_ARRAYS.format(condition="WHERE EXISTS (SELECT FROM written)")
_INSERT_MANY = text(INSERT_DEFERRED)


async def record_event(
    conn: AsyncConnection,
    stream: str,
    payload: Mapping[str, Scalar],
    *,
    request_id: str | None = None,
) -> str:
    """Insert the event in the current transaction; it reaches its stream only if that commits."""
    [outbox_id] = await record_events(conn, stream, [payload], request_id=request_id)
    return outbox_id


async def record_events(
    conn: AsyncConnection,
    stream: str,
    payloads: Sequence[Mapping[str, Scalar]],
    *,
    request_id: str | None = None,
) -> list[str]:
    """`record_event` for each payload, in order, in one round trip (none while the transaction
    keeps its events, see `defer_events`); returns the outbox ids."""
    rows = event_rows(stream, payloads, request_id=request_id)
    deferred = conn.info.get(DEFERRED)
    if deferred is not None:
        deferred.extend(rows)
    elif rows:
        await conn.execute(_INSERT_MANY, deferred_columns(rows))
    return [str(row["id"]) for row in rows]


def event_rows(
    stream: str, payloads: Sequence[Mapping[str, Scalar]], *, request_id: str | None = None
) -> list[dict[str, Any]]:
    """The event_outbox rows of `payloads`, not yet written (`record_events` writes or keeps them)."""
    traceparent = current_traceparent()  # NULL unless the writer is traced
    return [
        {
            "id": new_id(),
            "stream_name": stream,
            "payload_json": dict(payload),
            "request_id": request_id,
            "traceparent": traceparent,
        }
        for payload in payloads
    ]


async def record_change(
    conn: AsyncConnection,
    event: str,
    *,
    entity_type: str,
    entity_id: str,
    zone_id: str | None,
    request_id: str | None = None,
) -> str:
    """A `caracal.changes` entry: what changed (`zone.created`, ...), in which zone, which entity."""
    payload = change_payload(event, entity_type=entity_type, entity_id=entity_id, zone_id=zone_id)
    return await record_event(conn, CHANGES, payload, request_id=request_id)


def change_payload(event: str, *, entity_type: str, entity_id: str, zone_id: str | None) -> dict[str, Scalar]:
    """The fields of a `caracal.changes` entry (for `record_change`, or many through `record_events`)."""
    return {"event": event, "zone_id": zone_id, "entity_type": entity_type, "entity_id": entity_id}


_PRUNE = text(
    """
    DELETE FROM event_outbox WHERE id IN (
        SELECT id FROM event_outbox
         WHERE dispatched_at IS NOT NULL AND dispatched_at < now() - make_interval(hours => :hours)
         LIMIT :batch)
    """
)


async def prune_delivered(conn: AsyncConnection, retention_hours: int, batch: int = 5000) -> int:
    """Delete one bounded batch of rows delivered longer ago than the retention period."""
    result = await conn.execute(_PRUNE, {"hours": retention_hours, "batch": batch})
    return int(result.rowcount or 0)


async def send_wake_hint(redis: Redis) -> bool:
    """Tell the dispatchers to look now, after a commit that wrote events (best effort, never inside
    the transaction: the dispatcher's poll finds what a lost hint announced). True when sent."""
    try:
        await asyncio.wait_for(redis.publish(WAKE_CHANNEL, "1"), WAKE_TIMEOUT_S)
    except (RedisError, OSError, TimeoutError) as exc:
        log.debug("wake-up hint not sent (the dispatcher's poll will find the events): %r", exc)
        return False
    return True
