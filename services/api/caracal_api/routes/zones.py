"""/v1/zones (CONTRACT.md §4.1)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.di import Provide
from litestar.params import FromPath, JSONBody

from caracal.domain import zones
from caracal.domain.zones import Zone, ZoneCreate, ZoneDcrStatus, ZoneUpdate
from caracal.etags import require_unchanged
from caracal_api.openapi import problems
from caracal_api.resources import ResourcesDep, provide_resources
from caracal_api.routes.common import LINK, PAGE, PageDep, caller_of, listed
from caracal_api.routes.conditional import ETAG, IfMatch, conditional, tagged

BODY = {"body_error": "invalid_zone"}


class ZoneController(Controller):
    path = "/v1/zones"
    tags = ["zones"]
    dependencies = {"res": Provide(provide_resources, sync_to_thread=False)}

    @get(
        "/",
        dependencies=PAGE,
        response_headers=[LINK],
        summary="List zones (newest first; Link header for the next page)",
    )
    async def list_zones(
        self, request: Request[Any, Any, Any], res: ResourcesDep, page: PageDep
    ) -> Response[list[Zone]]:
        return await listed(request, res.engine, page, zones.list_zones)

    @post(
        "/",
        opt=BODY,
        responses=problems(409),
        summary="Create a zone (slug generated from the name when absent)",
    )
    async def create_zone(
        self, request: Request[Any, Any, Any], res: ResourcesDep, data: JSONBody[ZoneCreate]
    ) -> Response[Zone]:
        kek, caller = res.settings.kek, caller_of(request)
        return await res.write_at_once(
            request,
            lambda conn, audit: zones.create_zone_at_once(conn, kek, data, caller, audit),
            # the name's slug was taken (or an Idempotency-Key came): a free one is found under the lock
            lambda conn: zones.create_zone(conn, kek, data, caller, under_lock=True),
        )

    @get("/{zone_id:str}", response_headers=[ETAG], summary="Get a zone")
    async def get_zone(self, zone_id: FromPath[str], res: ResourcesDep) -> Response[Zone]:
        return tagged(await res.read(lambda conn: zones.get_zone(conn, zone_id)))

    @get("/{zone_id:str}/dcr-status", summary="DCR switch and live DCR applications of a zone")
    async def dcr_status(self, zone_id: FromPath[str], res: ResourcesDep) -> ZoneDcrStatus:
        return await res.read(lambda conn: zones.dcr_status(conn, zone_id))

    @patch(
        "/{zone_id:str}",
        opt=BODY,
        response_headers=[ETAG],
        responses=conditional(409),
        summary="Update a zone; dcr_enabled=false may shut DCR down",
    )
    async def update_zone(
        self,
        request: Request[Any, Any, Any],
        zone_id: FromPath[str],
        res: ResourcesDep,
        data: JSONBody[ZoneUpdate],
        if_match: IfMatch = None,
    ) -> Response[Zone]:
        caller = caller_of(request)
        if if_match is None and zones.updates_at_once(data):  # one statement: no lock, no tag to compare
            zone = await res.at_once(
                request, lambda conn, audit: zones.update_zone_at_once(conn, zone_id, data, caller, audit)
            )
            if zone is not None:
                return tagged(zone)
        async with res.writing(request) as conn:
            await require_unchanged(
                conn, if_match, "zone", (None, zone_id), lambda: zones.get_zone(conn, zone_id)
            )
            return tagged(await zones.update_zone(conn, zone_id, data, caller))

    @delete("/{zone_id:str}", responses=conditional(), summary="Archive a zone")
    async def delete_zone(
        self,
        request: Request[Any, Any, Any],
        zone_id: FromPath[str],
        res: ResourcesDep,
        if_match: IfMatch = None,
    ) -> None:
        caller = caller_of(request)
        if if_match is None:  # one statement: no lock, no tag to compare
            archived = await res.at_once(
                request, lambda conn, audit: zones.delete_zone_at_once(conn, zone_id, caller, audit)
            )
            if archived is not None:
                return
        async with res.writing(request) as conn:
            await require_unchanged(
                conn, if_match, "zone", (None, zone_id), lambda: zones.get_zone(conn, zone_id)
            )
            await zones.delete_zone(conn, zone_id, caller)
