"""/v1/outbox: dead letters, listed, inspected and requeued (global tokens only)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.di import Provide
from litestar.params import FromPath, FromQuery, JSONBody
from sqlalchemy.ext.asyncio import AsyncConnection

from caracal.domain import dead_letters
from caracal.domain.dead_letters import OutboxEvent, RequeueDead, RequeueResult
from caracal.domain.wire import Text
from caracal_api.openapi import problems
from caracal_api.resources import ResourcesDep, provide_resources
from caracal_api.routes.common import LINK, PAGE, PageDep, QueryText, caller_of, listed, query_value
from caracal_api.routes.conditional import ETAG, tagged


class OutboxController(Controller):
    path = "/v1/outbox"
    tags = ["outbox"]
    dependencies = {"res": Provide(provide_resources, sync_to_thread=False)}

    @get(
        "/dead",
        dependencies=PAGE,
        response_headers=[LINK],
        summary="Dead-lettered events, newest first (optional ?stream=)",
    )
    async def list_dead(
        self,
        request: Request[Any, Any, Any],
        res: ResourcesDep,
        page: PageDep,
        stream: FromQuery[QueryText | None] = None,
    ) -> Response[list[OutboxEvent]]:
        wanted = query_value("stream", stream, Text)
        return await listed(
            request, res.engine, page, lambda conn, page: dead_letters.list_dead(conn, page, wanted)
        )

    @post(
        "/dead/requeue",
        status_code=200,
        opt={"body_error": "invalid_body"},
        summary="Requeue up to 1000 dead events (optionally of one stream) in their original order",
    )
    async def requeue_all(
        self, request: Request[Any, Any, Any], res: ResourcesDep, data: JSONBody[RequeueDead | None] = None
    ) -> Response[RequeueResult]:
        async def requeue_dead(conn: AsyncConnection) -> RequeueResult:
            stream = data.stream if data else None
            return RequeueResult(requeued=await dead_letters.requeue_dead(conn, caller_of(request), stream))

        return await res.write(request, requeue_dead)

    @get("/{event_id:str}", response_headers=[ETAG], summary="One outbox event and its delivery state")
    async def get_event(self, event_id: FromPath[str], res: ResourcesDep) -> Response[OutboxEvent]:
        return tagged(await res.read(lambda conn: dead_letters.get_outbox_event(conn, event_id)))

    @post(
        "/{event_id:str}/requeue",
        status_code=200,
        responses=problems(409),
        summary="Requeue one dead event",
    )
    async def requeue(
        self, request: Request[Any, Any, Any], event_id: FromPath[str], res: ResourcesDep
    ) -> Response[OutboxEvent]:
        return await res.write(request, lambda conn: dead_letters.requeue(conn, event_id, caller_of(request)))
