"""The one way an aggregate announces a change on `caracal.changes`: `<entity>.<verb>` in a zone."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from caracal.domain.context import Caller
from caracal.events import CHANGES, Scalar
from caracal.outbox import change_payload, event_rows, record_events


async def entity_changed(
    conn: AsyncConnection, event: str, zone_id: str | None, entity_id: str, caller: Caller | None
) -> None:
    """`event` names the entity before its dot (`resource.updated` is about a resource)."""
    await record_events(conn, CHANGES, [_payload(event, zone_id, entity_id)], request_id=_request_id(caller))


def change_rows(
    event: str, zone_id: str | None, entity_id: str, caller: Caller | None
) -> list[dict[str, Any]]:
    """`entity_changed`'s outbox row, not written: for a statement that writes it itself."""
    return event_rows(CHANGES, [_payload(event, zone_id, entity_id)], request_id=_request_id(caller))


def _payload(event: str, zone_id: str | None, entity_id: str) -> dict[str, Scalar]:
    return change_payload(event, entity_type=event.partition(".")[0], entity_id=entity_id, zone_id=zone_id)


def _request_id(caller: Caller | None) -> str | None:
    return caller.request_id if caller else None
