"""/v1/zones/{zone_id}/sessions (CONTRACT.md §4.9, §3.2): the STS's sessions listed, and revoked by
an admin (one session, or every active session of a subject, each with its descendants)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, FromQuery, JSONBody

from caracal.db.paging import Page
from caracal.domain import sessions
from caracal.domain.sessions import (
    SessionFilters,
    SessionPage,
    SessionRevoked,
    SessionStatus,
    SubjectRevoke,
    SubjectSessionsRevoked,
)
from caracal_api.openapi import problems
from caracal_api.resources import ResourcesDep, provide_resources
from caracal_api.routes.common import ROWS_PAGE, QueryText, caller_of, zone_before_body

BODY = {"body_error": "invalid_session_revoke"}


def provide_filters(
    page: NamedDependency[Page],
    *,
    status: FromQuery[SessionStatus | None] = None,
    subject_id: FromQuery[QueryText | None] = None,
) -> SessionFilters:
    """Resolved after the page, so a bad limit or cursor is reported before a bad filter."""
    del page
    return sessions.session_filters(status, subject_id)


class SessionController(Controller):
    path = "/v1/zones/{zone_id:str}/sessions"
    tags = ["sessions"]
    dependencies = {"res": Provide(provide_resources, sync_to_thread=False)}

    @get(
        "/",
        dependencies={
            "page": ROWS_PAGE,
            "filters": Provide(provide_filters, sync_to_thread=False),
        },
        summary="The zone's sessions, newest first, as {rows, next_cursor}",
    )
    async def list_sessions(
        self,
        zone_id: FromPath[str],
        res: ResourcesDep,
        page: NamedDependency[Page],
        filters: NamedDependency[SessionFilters],
    ) -> SessionPage:
        return await res.read(lambda conn: sessions.list_sessions(conn, zone_id, page, filters))

    @post(
        "/{session_id:str}/revoke",
        status_code=200,
        responses=problems(404),
        summary="Revoke a session and its descendants (again: revokes only what is still active)",
    )
    async def revoke_session(
        self,
        request: Request[Any, Any, Any],
        zone_id: FromPath[str],
        session_id: FromPath[str],
        res: ResourcesDep,
    ) -> Response[SessionRevoked]:
        request_id = caller_of(request).request_id
        return await res.write(
            request, lambda conn: sessions.revoke_session(conn, zone_id, session_id, request_id=request_id)
        )

    @post(
        "/revoke",
        status_code=200,
        opt=BODY,
        before_request=zone_before_body,
        responses=problems(404),
        summary="Revoke every active session of a subject in the zone, with their descendants",
    )
    async def revoke_subject(
        self,
        request: Request[Any, Any, Any],
        zone_id: FromPath[str],
        res: ResourcesDep,
        data: JSONBody[SubjectRevoke],
    ) -> Response[SubjectSessionsRevoked]:
        request_id = caller_of(request).request_id
        return await res.write(
            request, lambda conn: sessions.revoke_subject(conn, zone_id, data, request_id=request_id)
        )
