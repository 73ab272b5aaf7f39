"""/v1/zones/{zone_id}/resources (CONTRACT.md §4.3)."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.di import Provide
from litestar.params import FromPath, HeaderParameter, JSONBody

from caracal.db.paging import Page
from caracal.domain import resource_changes, resources
from caracal.domain.resource_rules import CONTROL_HEADER, CONTROL_HEADER_MANAGE, ResourceRules
from caracal.domain.resources import Resource, ResourceCreate, ResourceUpdate
from caracal.etags import require_unchanged
from caracal_api.openapi import problems
from caracal_api.resources import ResourcesDep, provide_resources
from caracal_api.routes.common import LINK, PAGE, PageDep, caller_of, listed, zone_before_body
from caracal_api.routes.conditional import ETAG, IfMatch, conditional, tagged

BODY = {"body_error": "invalid_resource"}
ControlHeader = Annotated[
    str | None,
    HeaderParameter(
        name=CONTROL_HEADER,
        required=False,
        description=f"`{CONTROL_HEADER_MANAGE}` shows and lets change the control resource",
    ),
]


class ResourceController(Controller):
    path = "/v1/zones/{zone_id:str}/resources"
    tags = ["resources"]
    dependencies = {"res": Provide(provide_resources, sync_to_thread=False)}

    @get("/", dependencies=PAGE, response_headers=[LINK], summary="List a zone's resources")
    async def list_resources(
        self,
        request: Request[Any, Any, Any],
        zone_id: FromPath[str],
        res: ResourcesDep,
        page: PageDep,
        control: ControlHeader = None,
    ) -> Response[list[Resource]]:
        rules = ResourceRules.of(res.settings, control)

        async def fetch(conn: Any, wanted: Page) -> Any:
            return await resources.list_resources(conn, zone_id, wanted, rules)

        return await listed(request, res.engine, page, fetch)

    @post(
        "/",
        opt=BODY,
        before_request=zone_before_body,
        responses=problems(404, 409),
        summary="Create a resource (identifier generated from the name when absent) and its Gateway binding",
    )
    async def create_resource(
        self,
        request: Request[Any, Any, Any],
        zone_id: FromPath[str],
        res: ResourcesDep,
        data: JSONBody[ResourceCreate],
        control: ControlHeader = None,
    ) -> Response[Resource]:
        rules = ResourceRules.of(res.settings, control)
        return await res.write(
            request,
            lambda conn: resource_changes.create_resource(conn, zone_id, data, rules, caller_of(request)),
        )

    @get("/{resource_id:str}", response_headers=[ETAG], summary="Get a resource")
    async def get_resource(
        self,
        zone_id: FromPath[str],
        resource_id: FromPath[str],
        res: ResourcesDep,
        control: ControlHeader = None,
    ) -> Response[Resource]:
        rules = ResourceRules.of(res.settings, control)
        return tagged(await res.read(lambda conn: resources.get_resource(conn, zone_id, resource_id, rules)))

    @patch(
        "/{resource_id:str}",
        opt=BODY,
        response_headers=[ETAG],
        responses=conditional(404, 409),
        summary="Update a resource; its Gateway binding follows",
    )
    async def update_resource(
        self,
        request: Request[Any, Any, Any],
        *,
        zone_id: FromPath[str],
        resource_id: FromPath[str],
        res: ResourcesDep,
        data: JSONBody[ResourceUpdate],
        control: ControlHeader = None,
        if_match: IfMatch = None,
    ) -> Response[Resource]:
        rules = ResourceRules.of(res.settings, control)
        async with res.writing(request) as conn:
            await require_unchanged(
                conn,
                if_match,
                "resource",
                (zone_id, resource_id),
                lambda: resources.get_resource(conn, zone_id, resource_id, rules),
            )
            updated = await resource_changes.update_resource(
                conn, zone_id, resource_id, data, rules=rules, caller=caller_of(request)
            )
            return tagged(updated)

    @delete("/{resource_id:str}", responses=conditional(409), summary="Archive a resource and unbind it")
    async def delete_resource(
        self,
        request: Request[Any, Any, Any],
        zone_id: FromPath[str],
        resource_id: FromPath[str],
        res: ResourcesDep,
        if_match: IfMatch = None,
    ) -> None:
        rules = ResourceRules.of(res.settings, None)
        async with res.writing(request) as conn:
            await require_unchanged(
                conn,
                if_match,
                "resource",
                (zone_id, resource_id),
                lambda: resources.get_resource(conn, zone_id, resource_id, rules),
            )
            await resource_changes.delete_resource(conn, zone_id, resource_id, rules, caller_of(request))
