"""What list and mutation routes share: paging from the query, the Link header, the caller."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

from litestar import Request, Response
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from caracal.db.engine import reading
from caracal.db.paging import Listing, Page, parse_page
from caracal.domain.context import Caller


def page_of(request: Request[Any, Any, Any], *, default: int = 200, maximum: int = 500) -> Page:
    return parse_page(
        request.query_params.get("limit"),
        request.query_params.get("cursor"),
        default=default,
        maximum=maximum,
    )


def caller_of(request: Request[Any, Any, Any]) -> Caller:
    caller = request.scope.get("state", {}).get("caller")
    return (
        caller
        if isinstance(caller, Caller)
        else Caller(None, request.scope.get("state", {}).get("request_id"))
    )


def next_link(request: Request[Any, Any, Any], cursor: str, limit: int) -> str:
    """The request's query in its order, limit set, cursor last (as the original writes it)."""
    query = parse_qsl(request.url.query, keep_blank_values=True)  # query_params does not keep the order
    params = [(k, str(limit) if k == "limit" else v) for k, v in query if k != "cursor"]
    if not any(k == "limit" for k, _ in params):
        params.append(("limit", str(limit)))
    params.append(("cursor", cursor))
    return f'<{request.url.path}?{urlencode(params, quote_via=quote)}>; rel="next"'


async def listed(
    request: Request[Any, Any, Any],
    engine: AsyncEngine,
    fetch: Callable[[AsyncConnection, Page], Awaitable[Listing]],
) -> Response[list[dict[str, Any]]]:
    """A standard list route: page from the query, one read, the bare array and its Link header."""
    page = page_of(request)
    async with reading(engine) as conn:
        result = await fetch(conn, page)
    return list_response(request, page, result)


def list_response(
    request: Request[Any, Any, Any], page: Page, result: Listing
) -> Response[list[dict[str, Any]]]:
    """A bare JSON array; a full page carries `link: <…>; rel="next"`."""
    headers = {}
    if result.next_cursor is not None:
        headers["link"] = next_link(request, result.next_cursor, page.limit)
    return Response(result.items, headers=headers)
