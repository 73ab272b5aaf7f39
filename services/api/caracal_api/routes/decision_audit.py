"""/v1/zones/{zone_id}/audit (CONTRACT.md §4.13): the decision audit, filtered and paged, per request."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, get
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, FromQuery, Parameter

from caracal.db.paging import Page, decode_cursor
from caracal.domain import decision_audit
from caracal.domain.decision_audit import AuditDetailRow, AuditFilters, AuditPage, Decision, Explanation
from caracal_api.openapi import problems
from caracal_api.resources import ResourcesDep, provide_resources
from caracal_api.routes.common import Cursor, QueryText, query_value

# CONTRACT.md §3.2: audit pages are larger than the standard lists' and carry their cursor in the body
AUDIT_DEFAULT, AUDIT_MAX = 100, 1000
_LIMIT_RULE = Annotated[int, msgspec.Meta(ge=1, le=AUDIT_MAX)]
_CURSOR_RULE = Annotated[str, msgspec.Meta(min_length=1, max_length=512)]
AuditLimit = Annotated[int, Parameter(ge=1, le=AUDIT_MAX, description=f"Page size (default {AUDIT_DEFAULT})")]
Instant = Annotated[QueryText, Parameter(description="ISO-8601 UTC with Z, e.g. 2026-06-03T10:12:13.456Z")]


def provide_audit_page(
    limit: FromQuery[AuditLimit | None] = None, cursor: FromQuery[Cursor | None] = None
) -> Page:
    size = query_value("limit", limit, _LIMIT_RULE)
    token = query_value("cursor", cursor, _CURSOR_RULE)
    return Page(size or AUDIT_DEFAULT, decode_cursor(token) if token is not None else None)


def provide_filters(
    page: NamedDependency[Page],
    *,
    since: FromQuery[Instant | None] = None,
    until: FromQuery[Instant | None] = None,
    request_id: FromQuery[QueryText | None] = None,
    decision: FromQuery[Decision | None] = None,
    event_type: FromQuery[QueryText | None] = None,
) -> AuditFilters:
    """Resolved after the page, so a bad limit or cursor is reported before a bad filter."""
    del page
    given = {"since": since, "until": until, "request_id": request_id, "decision": decision}
    return decision_audit.audit_filters({**given, "event_type": event_type})


class DecisionAuditController(Controller):
    path = "/v1/zones/{zone_id:str}/audit"
    tags = ["decision audit"]
    dependencies = {"res": Provide(provide_resources, sync_to_thread=False)}

    @get(
        "/",
        dependencies={
            "page": Provide(provide_audit_page, sync_to_thread=False),
            "filters": Provide(provide_filters, sync_to_thread=False),
        },
        summary="The zone's decision audit events, newest first, as {rows, next_cursor}",
    )
    async def list_audit_events(
        self,
        zone_id: FromPath[str],
        res: ResourcesDep,
        page: NamedDependency[Page],
        filters: NamedDependency[AuditFilters],
    ) -> AuditPage:
        return await res.read(lambda conn: decision_audit.list_audit_events(conn, zone_id, page, filters))

    @get(
        "/by-request/{request_id:str}",
        responses=problems(404),
        summary="One request's decision audit events, oldest first",
    )
    async def request_events(
        self, zone_id: FromPath[str], request_id: FromPath[str], res: ResourcesDep
    ) -> list[AuditDetailRow]:
        return await res.read(lambda conn: decision_audit.request_events(conn, zone_id, request_id))

    @get(
        "/by-request/{request_id:str}/explain",
        responses=problems(404),
        summary="Why a request was decided as it was: its final decision, its denials, its events",
    )
    async def explain_request(
        self, zone_id: FromPath[str], request_id: FromPath[str], res: ResourcesDep
    ) -> Explanation:
        return await res.read(lambda conn: decision_audit.explain_request(conn, zone_id, request_id))
