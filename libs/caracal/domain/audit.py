"""The admin audit trail: its rows, written in a transaction or best effort; its reads."""

from __future__ import annotations

import json
import re
from datetime import datetime
from functools import cache
from typing import Annotated, Any
from urllib.parse import unquote

import msgspec
from sqlalchemy import ColumnElement, Insert, Text, Update, bindparam, cast, insert, select, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection

from caracal.audit_chain import CONTENT_COLUMNS
from caracal.db.paging import Listing, Page, PagedQuery, listing
from caracal.db.query import Query
from caracal.db.tables import TS
from caracal.db.tables.audit import admin_audit_events
from caracal.domain.context import Caller
from caracal.domain.wire import Name, Resource, Timestamp
from caracal.errors import InvalidInput
from caracal.ids import new_id
from caracal.outbox import INSERT_DEFERRED, INSERT_DEFERRED_IF_WRITTEN, deferred_columns
from caracal.timefmt import iso_ms, parse_iso

_INSERT = insert(admin_audit_events)  # built once: the parameters carry the row
RLS_PAYLOAD = {"rls_bypass": True, "rls_mode": "control_plane_wildcard", "rls_zone_guc": "*"}
ENTITY_SEGMENTS = frozenset(
    {
        "zones",
        "applications",
        "resources",
        "providers",
        "provider-grants",
        "policies",
        "policy-sets",
        "policy-templates",
        "grants",
        "invitations",
        "teams",
        "step-up-challenges",
        "admin-tokens",
        "outbox",
    }
)


def entity_of(path: str) -> tuple[str | None, str | None, str | None]:
    """(zone_id, entity_type, entity_id) of a /v1 path, as the contract's audit trail names them."""
    segments = [s for s in path.split("?", 1)[0].split("/") if s]
    zone_id = segments[2] if len(segments) > 2 and segments[1] == "zones" else None
    entity_type = entity_id = None
    for index, segment in enumerate(segments[:-1]):
        if segment in ENTITY_SEGMENTS:
            entity_type, entity_id = segment, segments[index + 1]
    return zone_id, entity_type, entity_id


def audit_row(
    caller: Caller,
    *,
    action: str,
    method: str | None = None,
    path: str | None = None,
    status_code: int | None = None,
    zone_id: str | None = None,
    entity_type: str | None = None,
    entity_id: str | None = None,
    payload: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The admin_audit_events row for one action of `caller`."""
    actor = caller.actor
    return {
        "id": new_id(),
        "request_id": caller.request_id,
        "actor_id": actor.id if actor else None,
        "actor_name": actor.name if actor else None,
        "actor_scope": actor.scope if actor else None,
        "action": action,
        "method": method,
        "path": path,
        "zone_id": zone_id,
        "entity_type": entity_type,
        "entity_id": entity_id,
        "status_code": status_code,
        "payload_json": {**RLS_PAYLOAD, **(payload or {})},
    }


def request_audit_row(caller: Caller, method: str, url: str, status_code: int) -> dict[str, Any]:
    """The contract's row for one /v1 request (`url` as sent, query included)."""
    zone_id, entity_type, entity_id = entity_of(url)
    return audit_row(
        caller,
        action=f"{method} {url}",
        method=method,
        path=url,
        status_code=status_code,
        zone_id=zone_id,
        entity_type=entity_type,
        entity_id=entity_id,
    )


async def insert_audit_rows(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    """Rows from audit_row(), in one statement."""
    if len(rows) == 1:
        await conn.execute(_INSERT, rows[0])
    elif rows:
        await conn.execute(_INSERT, rows)


# one audit row and the transaction's kept events (caracal.outbox.defer_events): one round trip.
# add_cte renders the events' INSERT as a data-modifying WITH although the row's INSERT reads nothing
# from it; the row's values bind as in _INSERT, the events' arrays as INSERT_DEFERRED's parameters.
_WITH_EVENTS = _INSERT.add_cte(text(INSERT_DEFERRED).columns().cte("events"))


async def insert_audit_row_with_events(
    conn: AsyncConnection, row: dict[str, Any], events: list[dict[str, Any]]
) -> None:
    """A row from audit_row() and the outbox rows kept for this transaction, in one statement."""
    if not events:
        await insert_audit_rows(conn, [row])
        return
    await conn.execute(_WITH_EVENTS, {**row, **deferred_columns(events)})


# The columns audit_row() fills, in its order: the chain's content columns as written (the payload's
# column is payload_json; occurred_at comes from its default, sealed_at from the sealer)
ROW_COLUMNS = tuple(
    "payload_json" if name == "payload" else name
    for name in CONTENT_COLUMNS
    if name not in ("occurred_at", "sealed_at")
)


def audited(statement: Insert | Update) -> Query:
    """`statement` (an INSERT or UPDATE … RETURNING that returns no row when it writes nothing) with
    the request's audit row and its events as data-modifying CTEs: one statement, hence one
    transaction, and in autocommit one round trip. The audit row and the events are written only
    when the statement returned a row (all CTEs see one snapshot; its RETURNING is the CTE
    `written`)."""
    written = statement.cte("written")
    values = [
        # typed, so Postgres knows each parameter's type; the payload as its JSON text (for the driver)
        cast(bindparam(f"a_{name}", type_=Text), JSONB)
        if name == "payload_json"
        else bindparam(f"a_{name}", type_=admin_audit_events.c[name].type)
        for name in ROW_COLUMNS
    ]
    audit = insert(admin_audit_events).from_select(ROW_COLUMNS, select(*values).select_from(written))
    events = text(INSERT_DEFERRED_IF_WRITTEN).columns().cte("events")
    return Query(select(*written.c).add_cte(audit.cte("audit")).add_cte(events))


def audited_params(
    values: dict[str, Any], row: dict[str, Any], events: list[dict[str, Any]]
) -> dict[str, Any]:
    """The parameters of an `audited` statement: its own `values`, the audit `row`, the `events`."""
    audit = {f"a_{name}": row[name] for name in ROW_COLUMNS}
    audit["a_payload_json"] = json.dumps(row["payload_json"])
    return {**values, **audit, **deferred_columns(events)}


async def record_audit(conn: AsyncConnection, caller: Caller, **fields: Any) -> None:
    """One audit row in the caller's transaction (see audit_row for the fields)."""
    await insert_audit_rows(conn, [audit_row(caller, **fields)])


# --- reads (GET /v1/zones/{zone_id}/admin-audit, GET /v1/admin-audit) --------------------------------

Method = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z]{1,16}$")]
# Query values that may carry a credential (the OAuth callback's code and state, CONTRACT.md §4.13's
# keys): stored as sent, shown as `[redacted]`.
SECRET_QUERY_KEYS = frozenset(
    {"code", "state", "password", "passwd", "secret", "token", "access_token", "refresh_token", "id_token"}
    | {"api_key", "apikey", "authorization", "cookie", "set_cookie", "client_secret", "private_key"}
    | {"session", "session_id", "assertion"}
)
_QUERY_PAIR = re.compile(r"(?<=[?&])([^=&#]*)=([^&#]*)")


class AdminAuditFilters(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The lists' filters; `since` is inclusive, `until` exclusive; `zone_id` only on the global list."""

    actor_id: Name | None = None
    entity_type: Name | None = None
    entity_id: Name | None = None
    method: Method | None = None
    since: datetime | None = None
    until: datetime | None = None
    zone_id: Name | None = None


class AdminAuditEvent(Resource):
    id: str
    request_id: str | None
    actor_id: str | None
    actor_name: str | None
    actor_scope: str | None
    action: str
    method: str | None
    path: str | None
    zone_id: str | None
    entity_type: str | None
    entity_id: str | None
    status_code: int | None
    payload_json: dict[str, Any]
    occurred_at: Timestamp
    sealed: bool  # chained by the sealer: edits from now on are caught by `caracal audit verify`
    chain_seq: int | None
    sealed_at: Timestamp | None


_EVENTS = admin_audit_events.c
_LISTED = select(*(c for c in admin_audit_events.c if c.name not in ("txid", "seq", "mac")))
_CONDITIONS: dict[str, ColumnElement[bool]] = {
    "actor_id": _EVENTS.actor_id == bindparam("actor_id"),
    "entity_type": _EVENTS.entity_type == bindparam("entity_type"),
    "entity_id": _EVENTS.entity_id == bindparam("entity_id"),
    "method": _EVENTS.method == bindparam("method"),
    "since": _EVENTS.occurred_at >= bindparam("since", type_=TS),
    "until": _EVENTS.occurred_at < bindparam("until", type_=TS),
    "zone_id": _EVENTS.zone_id == bindparam("zone_id"),
}


@cache
def _page_query(filters: frozenset[str]) -> PagedQuery:
    """One statement per set of filters given, built and compiled once; absent filters are absent
    from the SQL, so the page walks (zone_id, occurred_at, id) or (occurred_at, id) in order."""
    conditions = [_CONDITIONS[name] for name in sorted(filters)]
    return PagedQuery(_LISTED.where(*conditions), _EVENTS.occurred_at, _EVENTS.id)


def admin_audit_filters(query: dict[str, str | None]) -> AdminAuditFilters:
    """The filters of a list request; any invalid value is 400 invalid_query."""
    given: dict[str, Any] = {name: value for name, value in query.items() if value is not None}
    try:
        for name in ("since", "until"):
            if name in given:
                given[name] = parse_iso(given[name])
        filters = msgspec.convert(given, AdminAuditFilters)
    except (msgspec.ValidationError, ValueError) as exc:
        raise InvalidInput("invalid_query", str(exc)) from exc
    return (
        filters if filters.method is None else msgspec.structs.replace(filters, method=filters.method.upper())
    )


def redact_query(url: str | None) -> str | None:
    """The URL with the values of credential-like query keys replaced by `[redacted]`."""
    if url is None or "?" not in url:
        return url
    return _QUERY_PAIR.sub(
        lambda m: f"{m[1]}=[redacted]" if unquote(m[1]).lower() in SECRET_QUERY_KEYS else m[0], url
    )


def admin_audit_wire(row: Any) -> AdminAuditEvent:
    return AdminAuditEvent(
        id=row.id,
        request_id=row.request_id,
        actor_id=row.actor_id,
        actor_name=row.actor_name,
        actor_scope=row.actor_scope,
        action=redact_query(row.action) or "",
        method=row.method,
        path=redact_query(row.path),
        zone_id=row.zone_id,
        entity_type=row.entity_type,
        entity_id=row.entity_id,
        status_code=row.status_code,
        payload_json=row.payload_json,
        occurred_at=iso_ms(row.occurred_at),
        sealed=row.chain_seq is not None,
        chain_seq=row.chain_seq,
        sealed_at=iso_ms(row.sealed_at),
    )


async def list_admin_audit(
    conn: AsyncConnection, page: Page, filters: AdminAuditFilters
) -> Listing[AdminAuditEvent]:
    """Newest first; the zone route passes its zone as the `zone_id` filter."""
    values = {name: value for name, value in msgspec.structs.asdict(filters).items() if value is not None}
    query = _page_query(frozenset(values))
    return listing(await query.rows(conn, page, **values), page, admin_audit_wire, ts_attr="occurred_at")
