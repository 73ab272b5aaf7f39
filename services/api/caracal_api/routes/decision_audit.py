"""/v1/zones/{zone_id}/audit (CONTRACT.md §4.13): the decision audit, filtered and paged, per request."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, Response, get
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, FromQuery, Parameter

from caracal.db.paging import Page
from caracal.domain import decision_audit
from caracal.domain.decision_audit import AuditDetailRow, AuditFilters, AuditPage, Decision, Explanation
from caracal_api.openapi import problems
from caracal_api.resources import ResourcesDep, provide_resources
from caracal_api.routes.common import ROWS_PAGE, QueryText
from caracal_api.routes.conditional import ETAG, tagged

Instant = Annotated[QueryText, Parameter(description="ISO-8601 UTC with Z, e.g. 2026-06-03T10:12:13.456Z")]


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
            "page": ROWS_PAGE,
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
        response_headers=[ETAG],
        responses=problems(404),
        summary="One request's decision audit events, oldest first",
    )
    async def request_events(
        self, zone_id: FromPath[str], request_id: FromPath[str], res: ResourcesDep
    ) -> Response[list[AuditDetailRow]]:
        return tagged(await res.read(lambda conn: decision_audit.request_events(conn, zone_id, request_id)))

    @get(
        "/by-request/{request_id:str}/explain",
        responses=problems(404),
        summary="Why a request was decided as it was: its final decision, its denials, its events",
    )
    async def explain_request(
        self, zone_id: FromPath[str], request_id: FromPath[str], res: ResourcesDep
    ) -> Explanation:
        return await res.read(lambda conn: decision_audit.explain_request(conn, zone_id, request_id))
