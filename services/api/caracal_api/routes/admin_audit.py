"""GET /v1/zones/{zone_id}/admin-audit and GET /v1/admin-audit: the admin audit trail (DESIGN.md)."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Request, Response, get
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, FromQuery

from caracal.domain import audit
from caracal.domain.audit import AdminAuditEvent, AdminAuditFilters
from caracal_api.resources import ResourcesDep, provide_resources
from caracal_api.routes.common import LINK, PAGE, PageDep, QueryText, listed

SUMMARY = "filtered by actor, entity, method and time (since inclusive, until exclusive); newest first"


def provide_filters(
    page: PageDep,
    *,
    actor_id: FromQuery[QueryText | None] = None,
    entity_type: FromQuery[QueryText | None] = None,
    entity_id: FromQuery[QueryText | None] = None,
    method: FromQuery[QueryText | None] = None,
    since: FromQuery[QueryText | None] = None,
    until: FromQuery[QueryText | None] = None,
) -> AdminAuditFilters:
    """The filters (declared, so /openapi.json shows them); resolved after the page, so a bad limit
    or cursor is reported first, as on every list."""
    del page
    given = {
        "actor_id": actor_id,
        "entity_type": entity_type,
        "entity_id": entity_id,
        "method": method,
        "since": since,
        "until": until,
    }
    return audit.admin_audit_filters(given)


def provide_global_filters(
    filters: FiltersDep, zone_id: FromQuery[QueryText | None] = None
) -> AdminAuditFilters:
    """The global list's filters: the same, plus `zone_id`."""
    return msgspec.structs.replace(filters, zone_id=audit.admin_audit_filters({"zone_id": zone_id}).zone_id)


FiltersDep = NamedDependency[AdminAuditFilters]
FILTERS = {**PAGE, "filters": Provide(provide_filters, sync_to_thread=False)}
GLOBAL_FILTERS = {**FILTERS, "global_filters": Provide(provide_global_filters, sync_to_thread=False)}


class ZoneAdminAuditController(Controller):
    path = "/v1/zones/{zone_id:str}/admin-audit"
    tags = ["admin audit"]
    dependencies = {"res": Provide(provide_resources, sync_to_thread=False)}

    @get("/", dependencies=FILTERS, response_headers=[LINK], summary=f"A zone's admin audit rows, {SUMMARY}")
    async def list_zone_admin_audit(
        self,
        request: Request[Any, Any, Any],
        zone_id: FromPath[str],
        res: ResourcesDep,
        page: PageDep,
        filters: FiltersDep,
    ) -> Response[list[AdminAuditEvent]]:
        zoned = msgspec.structs.replace(filters, zone_id=zone_id)
        return await listed(
            request, res.engine, page, lambda conn, page: audit.list_admin_audit(conn, page, zoned)
        )


class AdminAuditController(Controller):
    path = "/v1/admin-audit"
    tags = ["admin audit"]
    dependencies = {"res": Provide(provide_resources, sync_to_thread=False)}

    @get(
        "/",
        dependencies=GLOBAL_FILTERS,
        response_headers=[LINK],
        summary=f"Every admin audit row (global tokens), {SUMMARY}; `zone_id` narrows to one zone",
    )
    async def list_admin_audit(
        self,
        request: Request[Any, Any, Any],
        res: ResourcesDep,
        page: PageDep,
        global_filters: FiltersDep,
    ) -> Response[list[AdminAuditEvent]]:
        return await listed(
            request, res.engine, page, lambda conn, page: audit.list_admin_audit(conn, page, global_filters)
        )
