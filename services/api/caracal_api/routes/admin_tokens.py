"""/v1/admin-tokens (CONTRACT.md §4.15) and POST /v1/local/bootstrap (§4.16)."""

from __future__ import annotations

from ipaddress import ip_address
from typing import Any

from litestar import Controller, Request, Response, delete, get, post
from litestar.di import Provide
from litestar.params import FromPath, JSONBody

from caracal.domain import admin_tokens
from caracal.domain.admin_tokens import AdminToken, AdminTokenCreate, AdminTokenCreated
from caracal.errors import Forbidden, NotFound
from caracal.etags import require_unchanged
from caracal_api.openapi import problems
from caracal_api.resources import ResourcesDep, provide_resources
from caracal_api.routes.common import LINK, PAGE, PageDep, caller_of, listed
from caracal_api.routes.conditional import IfMatch, conditional

GLOBAL_ONLY = "admin_token_management_requires_global"


class AdminTokenController(Controller):
    path = "/v1/admin-tokens"
    tags = ["admin tokens"]
    dependencies = {"res": Provide(provide_resources, sync_to_thread=False)}
    opt = {"global_only": GLOBAL_ONLY}

    @get("/", dependencies=PAGE, response_headers=[LINK], summary="List admin tokens (never their secret)")
    async def list_tokens(
        self, request: Request[Any, Any, Any], res: ResourcesDep, page: PageDep
    ) -> Response[list[AdminToken]]:
        return await listed(request, res.engine, page, admin_tokens.list_admin_tokens)

    @post(
        "/",
        opt={"body_error": "invalid_admin_token_request"},
        responses=problems(404),
        summary="Create a token (cleartext shown once)",
    )
    async def create_token(
        self, request: Request[Any, Any, Any], res: ResourcesDep, data: JSONBody[AdminTokenCreate]
    ) -> Response[AdminTokenCreated]:
        return await res.write(
            request, lambda conn: admin_tokens.create_admin_token(conn, data, caller_of(request))
        )

    @delete(
        "/{token_id:str}",
        opt={"param_error": "invalid_admin_token_id"},
        responses=conditional(),
        summary="Revoke a token at once",
    )
    async def revoke_token(
        self,
        request: Request[Any, Any, Any],
        token_id: FromPath[str],
        res: ResourcesDep,
        if_match: IfMatch = None,
    ) -> None:
        async with res.writing(request) as conn:
            await require_unchanged(
                conn,
                if_match,
                "admin_token",
                (None, token_id),
                lambda: admin_tokens.get_admin_token(conn, token_id),
            )
            await admin_tokens.revoke_admin_token(conn, token_id, caller_of(request))


def _is_loopback(host: str | None) -> bool:
    try:
        return host is not None and ip_address(host).is_loopback
    except ValueError:
        return False


@post(
    "/v1/local/bootstrap",
    opt={"public": True},
    tags=["admin tokens"],
    dependencies={"res": Provide(provide_resources, sync_to_thread=False)},
    responses=problems(403, 404, 409),
    security=[{}],  # no token needed: with the router's bearer entry, auth is optional here
    summary="Mint the first global token (loopback peers only, when enabled)",
)
async def local_bootstrap(request: Request[Any, Any, Any], res: ResourcesDep) -> AdminTokenCreated:
    if not res.settings.local_bootstrap_enabled:
        raise NotFound("not_found", "local bootstrap is disabled")
    if not _is_loopback(request.client.host if request.client else None):
        raise Forbidden("bootstrap_loopback_only", "bootstrap answers loopback peers only")
    async with res.writing(request) as conn:
        return await admin_tokens.bootstrap_local_token(conn, caller_of(request))
