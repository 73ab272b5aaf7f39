"""/v1/zones/{zone_id}/sessions (CONTRACT.md §4.9, §3.2): the STS's sessions listed, and revoked by
an admin (one session, or every active session of a subject, each with its descendants)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, FromQuery, JSONBody, Parameter

from caracal.db.paging import Page, decode_cursor
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
from caracal_api.routes.common import Cursor, QueryText, caller_of, query_value, zone_before_body

# CONTRACT.md §3.2: session pages are larger than the standard lists' and carry their cursor in the body
SESSIONS_DEFAULT, SESSIONS_MAX = 100, 1000
_LIMIT_RULE = Annotated[int, msgspec.Meta(ge=1, le=SESSIONS_MAX)]
_CURSOR_RULE = Annotated[str, msgspec.Meta(min_length=1, max_length=512)]
SessionLimit = Annotated[
    int, Parameter(ge=1, le=SESSIONS_MAX, description=f"Page size (default {SESSIONS_DEFAULT})")
]
BODY = {"body_error": "invalid_session_revoke"}


def provide_session_page(
    limit: FromQuery[SessionLimit | None] = None, cursor: FromQuery[Cursor | None] = None
) -> Page:
    size = query_value("limit", limit, _LIMIT_RULE)
    token = query_value("cursor", cursor, _CURSOR_RULE)
    return Page(size or SESSIONS_DEFAULT, decode_cursor(token) if token is not None else None)


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
            "page": Provide(provide_session_page, sync_to_thread=False),
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
    ) -> SessionRevoked:
        async with res.writing(request) as conn:
            return await sessions.revoke_session(
                conn, zone_id, session_id, request_id=caller_of(request).request_id
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
    ) -> SubjectSessionsRevoked:
        async with res.writing(request) as conn:
            request_id = caller_of(request).request_id
            return await sessions.revoke_subject(conn, zone_id, data, request_id=request_id)
