"""/v1/zones/{zone_id}/invitations (CONTRACT.md §4.12): list, create, withdraw (no GET of one)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, delete, get, post
from litestar.di import Provide
from litestar.params import FromPath, JSONBody

from caracal.domain import invitations
from caracal.domain.invitations import Invitation, InvitationCreate
from caracal.etags import require_unchanged
from caracal_api.openapi import problems
from caracal_api.resources import ResourcesDep, provide_resources
from caracal_api.routes.common import LINK, PAGE, PageDep, caller_of, listed
from caracal_api.routes.conditional import IfMatch, conditional

# a bad body is answered before the zone is looked at (CONTRACT.md §4.12): no zone_before_body here
BODY = {"body_error": "invalid_invitation"}


class InvitationController(Controller):
    path = "/v1/zones/{zone_id:str}/invitations"
    tags = ["invitations"]
    dependencies = {"res": Provide(provide_resources, sync_to_thread=False)}

    @get(
        "/",
        dependencies=PAGE,
        response_headers=[LINK],
        summary="List a zone's invitations, accepted and expired ones too (newest first)",
    )
    async def list_invitations(
        self, request: Request[Any, Any, Any], zone_id: FromPath[str], res: ResourcesDep, page: PageDep
    ) -> Response[list[Invitation]]:
        return await listed(
            request, res.engine, page, lambda conn, page: invitations.list_invitations(conn, zone_id, page)
        )

    @post(
        "/",
        opt=BODY,
        responses=problems(404),
        summary="Invite someone to the zone (expires_at defaults to seven days from now)",
    )
    async def create_invitation(
        self,
        request: Request[Any, Any, Any],
        zone_id: FromPath[str],
        res: ResourcesDep,
        data: JSONBody[InvitationCreate],
    ) -> Response[Invitation]:
        return await res.write(
            request, lambda conn: invitations.create_invitation(conn, zone_id, data, caller_of(request))
        )

    @delete(
        "/{invitation_id:str}",
        responses=conditional(),
        summary="Withdraw an invitation that was not accepted (hard delete)",
    )
    async def delete_invitation(
        self,
        request: Request[Any, Any, Any],
        zone_id: FromPath[str],
        invitation_id: FromPath[str],
        res: ResourcesDep,
        if_match: IfMatch = None,
    ) -> None:
        async with res.writing(request) as conn:
            await require_unchanged(
                conn,
                if_match,
                "invitation",
                (zone_id, invitation_id),
                lambda: invitations.get_invitation(conn, zone_id, invitation_id),
            )
            await invitations.delete_invitation(conn, zone_id, invitation_id, caller_of(request))
