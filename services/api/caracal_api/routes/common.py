"""What list and mutation routes share: the page query, the Link header, the caller, query errors."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar
from urllib.parse import parse_qsl, quote, urlencode

import msgspec
from litestar import Request, Response
from litestar.datastructures import ResponseHeader
from litestar.di import NamedDependency, Provide
from litestar.exceptions import ValidationException
from litestar.params import FromQuery, Parameter
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from caracal.db.engine import read_retried
from caracal.db.paging import Listing, Page, decode_cursor
from caracal.domain.context import Caller
from caracal.domain.wire import NO_NUL, Text
from caracal.domain.zones import require_live_zone
from caracal.errors import InvalidInput
from caracal_api.errors import handle_exception, problem
from caracal_api.hooks import before_v1

T = TypeVar("T")
PAGE_DEFAULT, PAGE_MAX = 200, 500
_LIMIT_RULE = Annotated[int, msgspec.Meta(ge=1, le=PAGE_MAX)]
_CURSOR_RULE = Annotated[str, msgspec.Meta(min_length=1, max_length=512)]
Limit = Annotated[int, Parameter(ge=1, le=PAGE_MAX, description=f"Page size (default {PAGE_DEFAULT})")]
Cursor = Annotated[
    str,
    Parameter(
        min_length=1,
        max_length=512,
        description="The `cursor` of the previous page's Link header",
    ),
]
# The one text type in a query: msgspec checks it, the Parameter shows the same rule in /openapi.json.
QueryText = Annotated[Text, Parameter(pattern=NO_NUL)]
# A full page carries the next page's URL; a short one does not.
LINK = ResponseHeader(
    name="link", description='`<next page URL>; rel="next"`', required=False, documentation_only=True
)


def query_value(name: str, value: T | None, rule: Any) -> T | None:
    """A query value checked against its declared type (Litestar documents, but does not check, these)."""
    if value is None:
        return None
    try:
        checked: T = msgspec.convert(value, rule)
    except msgspec.ValidationError as exc:
        raise InvalidInput("invalid_query", f"{name}: {exc}") from exc
    return checked


def _page(limit: int | None, cursor: str | None, limit_rule: Any, default: int) -> Page:
    size = query_value("limit", limit, limit_rule)
    token = query_value("cursor", cursor, _CURSOR_RULE)
    return Page(size or default, decode_cursor(token) if token is not None else None)


def provide_page(limit: FromQuery[Limit | None] = None, cursor: FromQuery[Cursor | None] = None) -> Page:
    """The page a list route reads, from `limit` and `cursor` (declared, so /openapi.json shows them)."""
    return _page(limit, cursor, _LIMIT_RULE, PAGE_DEFAULT)


PAGE = {"page": Provide(provide_page, sync_to_thread=False)}

# CONTRACT.md §3.2: session and audit pages are larger and carry their cursor in the body
ROWS_PAGE_DEFAULT, ROWS_PAGE_MAX = 100, 1000
_ROWS_LIMIT_RULE = Annotated[int, msgspec.Meta(ge=1, le=ROWS_PAGE_MAX)]
RowsLimit = Annotated[
    int, Parameter(ge=1, le=ROWS_PAGE_MAX, description=f"Page size (default {ROWS_PAGE_DEFAULT})")
]


def provide_rows_page(
    limit: FromQuery[RowsLimit | None] = None, cursor: FromQuery[Cursor | None] = None
) -> Page:
    """The page of a `{rows, next_cursor}` list (sessions, audit reads)."""
    return _page(limit, cursor, _ROWS_LIMIT_RULE, ROWS_PAGE_DEFAULT)


ROWS_PAGE = Provide(provide_rows_page, sync_to_thread=False)
PageDep = NamedDependency[Page]


def invalid_request(request: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    """A query parameter that fails its declared type is `invalid_query`; bodies keep the route's code."""
    extra = exc.extra if isinstance(exc.extra, list) else []
    if any(isinstance(item, dict) and item.get("source") == "query" for item in extra):
        messages = [str(item.get("message", "invalid")) for item in extra if isinstance(item, dict)]
        return problem(400, "invalid_query", "; ".join(messages) or "invalid query parameter")
    return handle_exception(request, exc)


async def zone_before_body(request: Request[Any, Any, Any]) -> Response[bytes] | None:
    """The /v1 hook for a create route where a missing zone outranks a bad body (404 before 400, as
    the contract orders them): the zone is looked up only when the body fails, so a good request
    pays nothing for the order. Give it as the handler's `before_request`."""
    try:
        return await before_v1(request)
    except ValidationException:
        engine: AsyncEngine = request.app.state.resources.engine
        zone_id = str(request.path_params["zone_id"])
        await read_retried(engine, lambda conn: require_live_zone(conn, zone_id))
        raise


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
    page: Page,
    fetch: Callable[[AsyncConnection, Page], Awaitable[Listing[T]]],
) -> Response[list[T]]:
    """A standard list route: one read, the bare array and its Link header."""
    result = await read_retried(engine, lambda conn: fetch(conn, page))
    return list_response(request, page, result)


def list_response(request: Request[Any, Any, Any], page: Page, result: Listing[T]) -> Response[list[T]]:
    """A bare JSON array; a full page carries `link: <…>; rel="next"`."""
    headers = {}
    if result.next_cursor is not None:
        headers["link"] = next_link(request, result.next_cursor, page.limit)
    return Response(result.items, headers=headers)
