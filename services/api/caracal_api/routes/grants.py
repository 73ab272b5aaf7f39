"""/v1/zones/{zone_id}/grants (CONTRACT.md §4.7)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, delete, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, FromQuery, JSONBody

from caracal.domain import grants
from caracal.domain.grants import Grant, GrantCreate, GrantFilters, GrantListRow, GrantStatus
from caracal.etags import require_unchanged
from caracal_api.openapi import problems
from caracal_api.resources import ResourcesDep, provide_resources
from caracal_api.routes.common import LINK, PAGE, PageDep, QueryText, caller_of, listed, zone_before_body
from caracal_api.routes.conditional import ETAG, IfMatch, conditional, tagged


def provide_filters(
    page: PageDep,
    *,
    application_id: FromQuery[QueryText | None] = None,
    user_id: FromQuery[QueryText | None] = None,
    subject_id: FromQuery[QueryText | None] = None,
    resource_id: FromQuery[QueryText | None] = None,
    provider_id: FromQuery[QueryText | None] = None,
    status: FromQuery[GrantStatus | None] = None,
    scopes: FromQuery[QueryText | None] = None,  # comma-separated
) -> GrantFilters:
    """The list's filters (declared, so /openapi.json shows them). It takes the page only to be
    resolved after it (Litestar resolves independent dependencies concurrently): a bad limit or
    cursor is reported before a bad filter, as the contract orders them."""
    del page
    given = {
        "application_id": application_id,
        "user_id": user_id,
        "subject_id": subject_id,
        "resource_id": resource_id,
        "provider_id": provider_id,
        "status": status,
        "scopes": scopes,
    }
    return grants.grant_filters(given)


FiltersDep = NamedDependency[GrantFilters]
# grants POST validates with the original's throwing parse: `invalid_body` with details.issues
BODY = {"body_error": "invalid_body"}


class GrantController(Controller):
    path = "/v1/zones/{zone_id:str}/grants"
    tags = ["grants"]
    dependencies = {"res": Provide(provide_resources, sync_to_thread=False)}

    @get(
        "/",
        dependencies={**PAGE, "filters": Provide(provide_filters, sync_to_thread=False)},
        response_headers=[LINK],
        summary="List grants with their application, resource and provider names (newest first)",
    )
    async def list_grants(
        self,
        request: Request[Any, Any, Any],
        zone_id: FromPath[str],
        res: ResourcesDep,
        page: PageDep,
        filters: FiltersDep,
    ) -> Response[list[GrantListRow]]:
        return await listed(
            request, res.engine, page, lambda conn, page: grants.list_grants(conn, zone_id, page, filters)
        )

    @post(
        "/",
        opt=BODY,
        before_request=zone_before_body,
        responses=problems(403, 404),
        summary="Grant an application scopes of a resource on behalf of a user",
    )
    async def create_grant(
        self,
        request: Request[Any, Any, Any],
        zone_id: FromPath[str],
        res: ResourcesDep,
        data: JSONBody[GrantCreate],
    ) -> Response[Grant]:
        return await res.write(
            request, lambda conn: grants.create_grant(conn, zone_id, data, caller_of(request))
        )

    @get("/{grant_id:str}", response_headers=[ETAG], summary="Get a grant")
    async def get_grant(
        self, zone_id: FromPath[str], grant_id: FromPath[str], res: ResourcesDep
    ) -> Response[Grant]:
        return tagged(await res.read(lambda conn: grants.get_grant(conn, zone_id, grant_id)))

    @delete(
        "/{grant_id:str}",
        responses=conditional(),
        summary="Revoke a grant and every active session of its user in the zone",
    )
    async def revoke_grant(
        self,
        request: Request[Any, Any, Any],
        zone_id: FromPath[str],
        grant_id: FromPath[str],
        res: ResourcesDep,
        if_match: IfMatch = None,
    ) -> None:
        async with res.writing(request) as conn:
            await require_unchanged(
                conn,
                if_match,
                "grant",
                (zone_id, grant_id),
                lambda: grants.get_grant(conn, zone_id, grant_id),
            )
            await grants.revoke_grant(conn, zone_id, grant_id, caller_of(request))
