"""Decision-audit reads (the ingester writes `audit_events`): filtered pages, one request's events and
their explanation, with secret-looking metadata keys redacted (CONTRACT.md §4.13)."""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Any, Literal

import msgspec
from sqlalchemy import ColumnElement, bindparam, select
from sqlalchemy.ext.asyncio import AsyncConnection

from caracal.db.paging import Page, PagedQuery, listing
from caracal.db.query import Query
from caracal.db.tables.decision_audit import audit_events as events
from caracal.domain.wire import Name, Resource, Timestamp, UtcTimestamp, utc_datetime
from caracal.errors import InvalidInput, NotFound
from caracal.timefmt import iso_ms

Decision = Literal["allow", "deny", "partial"]
REDACTED = "[redacted]"
SECRET_KEYS = frozenset(
    {
        "password",
        "passwd",
        "secret",
        "token",
        "access_token",
        "refresh_token",
        "id_token",
        "api_key",
        "apikey",
        "authorization",
        "cookie",
        "set_cookie",
        "client_secret",
        "private_key",
        "session",
        "session_id",
        "assertion",
    }
)


def redacted(value: Any) -> Any:
    """`value` with every secret-looking key's value replaced, at any depth (keys compared lowercased)."""
    if isinstance(value, dict):
        return {k: REDACTED if k.lower() in SECRET_KEYS else redacted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redacted(item) for item in value]
    return value


class AuditQuery(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The list's filters as the query gives them (CONTRACT.md §4.13)."""

    since: UtcTimestamp | None = None
    until: UtcTimestamp | None = None
    request_id: Name | None = None
    decision: Decision | None = None
    event_type: Name | None = None


class AuditFilters(msgspec.Struct, frozen=True):
    """The list's filters; `since` is inclusive, `until` exclusive."""

    since: datetime | None = None
    until: datetime | None = None
    request_id: Name | None = None
    decision: Decision | None = None
    event_type: Name | None = None


class AuditRow(Resource):
    id: str
    zone_id: str
    event_type: str
    request_id: str | None
    decision: str | None
    evaluation_status: str | None
    metadata_json: Any
    occurred_at: Timestamp
    ingested_at: Timestamp


class AuditDetailRow(AuditRow):
    policy_set_id: str | None
    policy_set_version_id: str | None
    manifest_sha: str | None
    determining_policies_json: Any
    diagnostics_json: Any


class AuditPage(Resource):
    rows: list[AuditRow]
    next_cursor: str | None


class DeniedEvent(Resource):
    event_id: str
    event_type: str
    evaluation_status: str | None
    determining_policies: Any
    diagnostics: Any
    metadata: Any


class Explanation(Resource):
    request_id: str
    zone_id: str
    final_decision: str
    denied: list[DeniedEvent]
    events: list[AuditDetailRow]


def audit_filters(given: dict[str, str | None]) -> AuditFilters:
    """The query's filters checked: any that breaks its rule is 400 invalid_query."""
    try:
        query = msgspec.convert({k: v for k, v in given.items() if v is not None}, AuditQuery)
        since, until = (utc_datetime(v) if v is not None else None for v in (query.since, query.until))
    except (msgspec.ValidationError, ValueError) as exc:
        raise InvalidInput("invalid_query", str(exc)) from exc
    return AuditFilters(since, until, query.request_id, query.decision, query.event_type)


_ROW = (
    events.c.id,
    events.c.zone_id,
    events.c.event_type,
    events.c.request_id,
    events.c.decision,
    events.c.evaluation_status,
    events.c.metadata_json,
    events.c.occurred_at,
    events.c.ingested_at,
)
_DETAIL = (
    *_ROW,
    events.c.policy_set_id,
    events.c.policy_set_version_id,
    events.c.manifest_sha,
    events.c.determining_policies_json,
    events.c.diagnostics_json,
)
_IN_ZONE = events.c.zone_id == bindparam("zone_id")
_CONDITIONS: dict[str, ColumnElement[bool]] = {
    "since": events.c.occurred_at >= bindparam("since", type_=events.c.occurred_at.type),
    "until": events.c.occurred_at < bindparam("until", type_=events.c.occurred_at.type),
    "request_id": events.c.request_id == bindparam("request_id"),
    "decision": events.c.decision == bindparam("decision"),
    "event_type": events.c.event_type == bindparam("event_type"),
}
_BY_REQUEST = Query(
    select(*_DETAIL)
    .where(_IN_ZONE, events.c.request_id == bindparam("request_id"))
    .order_by(events.c.occurred_at, events.c.id)
)


@cache
def _page_query(given: tuple[str, ...]) -> PagedQuery:
    """One statement per set of filters given (at most 32): an absent filter is absent from the SQL."""
    query = select(*_ROW).where(_IN_ZONE, *(_CONDITIONS[name] for name in given))
    return PagedQuery(query, events.c.occurred_at, events.c.id)


def audit_row_wire(row: Any) -> AuditRow:
    return AuditRow(
        id=row.id,
        zone_id=row.zone_id,
        event_type=row.event_type,
        request_id=row.request_id,
        decision=row.decision,
        evaluation_status=row.evaluation_status,
        metadata_json=redacted(row.metadata_json),
        occurred_at=iso_ms(row.occurred_at),
        ingested_at=iso_ms(row.ingested_at),
    )


def audit_detail_wire(row: Any) -> AuditDetailRow:
    return AuditDetailRow(
        **msgspec.structs.asdict(audit_row_wire(row)),
        policy_set_id=row.policy_set_id,
        policy_set_version_id=row.policy_set_version_id,
        manifest_sha=row.manifest_sha,
        determining_policies_json=row.determining_policies_json,
        diagnostics_json=row.diagnostics_json,
    )


async def list_audit_events(
    conn: AsyncConnection, zone_id: str, page: Page, filters: AuditFilters
) -> AuditPage:
    """Newest first (occurred_at, then id), `{rows, next_cursor}`; the cursor keeps full precision."""
    given = {name: getattr(filters, name) for name in _CONDITIONS if getattr(filters, name) is not None}
    rows = await _page_query(tuple(given)).rows(conn, page, zone_id=zone_id, **given)
    found = listing(rows, page, audit_row_wire, ts_attr="occurred_at")
    return AuditPage(rows=found.items, next_cursor=found.next_cursor)


async def request_events(conn: AsyncConnection, zone_id: str, request_id: str) -> list[AuditDetailRow]:
    """One request's events, oldest first; 404 request_not_found when the zone holds none."""
    rows = await _BY_REQUEST.rows(conn, {"zone_id": zone_id, "request_id": request_id})
    if not rows:
        raise NotFound("request_not_found", f"no audit events for request {request_id}")
    return [audit_detail_wire(row) for row in rows]


def explanation(zone_id: str, request_id: str, details: list[AuditDetailRow]) -> Explanation:
    """`deny` if any event denied, else the last event's decision, else `unknown`."""
    denied = [
        DeniedEvent(
            event_id=event.id,
            event_type=event.event_type,
            evaluation_status=event.evaluation_status,
            determining_policies=event.determining_policies_json,
            diagnostics=event.diagnostics_json,
            metadata=event.metadata_json,
        )
        for event in details
        if event.decision == "deny"
    ]
    final = "deny" if denied else (details[-1].decision if details and details[-1].decision else "unknown")
    return Explanation(
        request_id=request_id, zone_id=zone_id, final_decision=final, denied=denied, events=details
    )


async def explain_request(conn: AsyncConnection, zone_id: str, request_id: str) -> Explanation:
    return explanation(zone_id, request_id, await request_events(conn, zone_id, request_id))
