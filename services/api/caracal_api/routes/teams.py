"""/v1/zones/{zone_id}/teams (CONTRACT.md §4.11): lenient bodies checked with the throwing format."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.di import Provide
from litestar.params import FromPath, JSONBody

from caracal.domain import teams
from caracal.domain.teams import Team, TeamCreate, TeamUpdate
from caracal.etags import require_unchanged
from caracal_api.openapi import problems
from caracal_api.resources import ResourcesDep, provide_resources
from caracal_api.routes.common import LINK, PAGE, PageDep, caller_of, listed
from caracal_api.routes.conditional import ETAG, IfMatch, conditional, tagged

# teams POST and PATCH validate with the original's throwing parse: `invalid_body` with details.issues
BODY = {"body_error": "invalid_body"}


class TeamController(Controller):
    path = "/v1/zones/{zone_id:str}/teams"
    tags = ["teams"]
    dependencies = {"res": Provide(provide_resources, sync_to_thread=False)}

    @get(
        "/",
        dependencies=PAGE,
        response_headers=[LINK],
        summary="List a zone's teams (newest first; Link header for the next page)",
    )
    async def list_teams(
        self, request: Request[Any, Any, Any], zone_id: FromPath[str], res: ResourcesDep, page: PageDep
    ) -> Response[list[Team]]:
        return await listed(
            request, res.engine, page, lambda conn, page: teams.list_teams(conn, zone_id, page)
        )

    @post(
        "/",
        opt=BODY,
        responses=problems(404, 409),
        summary="Create a team (members default to []); a name taken in the zone is 409",
    )
    async def create_team(
        self,
        request: Request[Any, Any, Any],
        zone_id: FromPath[str],
        res: ResourcesDep,
        data: JSONBody[TeamCreate],
    ) -> Response[Team]:
        return await res.write(
            request, lambda conn: teams.create_team(conn, zone_id, data, caller_of(request))
        )

    @get("/{team_id:str}", response_headers=[ETAG], summary="Get a team")
    async def get_team(
        self, zone_id: FromPath[str], team_id: FromPath[str], res: ResourcesDep
    ) -> Response[Team]:
        return tagged(await res.read(lambda conn: teams.get_team(conn, zone_id, team_id)))

    @patch(
        "/{team_id:str}",
        opt=BODY,
        response_headers=[ETAG],
        responses=conditional(409),
        summary="Update a team's name or members (members replace the list)",
    )
    async def update_team(
        self,
        *,
        request: Request[Any, Any, Any],
        zone_id: FromPath[str],
        team_id: FromPath[str],
        res: ResourcesDep,
        data: JSONBody[TeamUpdate],
        if_match: IfMatch = None,
    ) -> Response[Team]:
        async with res.writing(request) as conn:
            await require_unchanged(
                conn, if_match, "team", (zone_id, team_id), lambda: teams.get_team(conn, zone_id, team_id)
            )
            return tagged(await teams.update_team(conn, zone_id, team_id, data, caller_of(request)))

    @delete("/{team_id:str}", responses=conditional(), summary="Delete a team (hard delete)")
    async def delete_team(
        self,
        request: Request[Any, Any, Any],
        zone_id: FromPath[str],
        team_id: FromPath[str],
        res: ResourcesDep,
        if_match: IfMatch = None,
    ) -> None:
        async with res.writing(request) as conn:
            await require_unchanged(
                conn, if_match, "team", (zone_id, team_id), lambda: teams.get_team(conn, zone_id, team_id)
            )
            await teams.delete_team(conn, zone_id, team_id, caller_of(request))
