"""What runs before a /v1 handler: the admin guard, then the strict body check (auth precedes bodies)."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import ValidationException

from caracal_api.auth import admin_guard, bearer_token
from caracal_api.idempotency import replay_if_known


async def before_v1(request: Request[Any, Any, Any]) -> Response[bytes] | None:
    """The admin guard, the strict body check (auth precedes body checks), then a retried POST's
    stored response (its Idempotency-Key). A before-request hook rather than a Litestar guard:
    Litestar copies the route handler for every guard call."""
    handler = request.route_handler
    if not handler.opt.get("public"):
        await admin_guard(request, handler)
    await strict_body(request)
    return await replay_if_known(request, bearer_token(request.headers.get("authorization")))


async def strict_body(request: Request[Any, Any, Any]) -> None:
    """Bodies are checked against the route's Struct strictly before the framework decodes them.

    Litestar converts leniently ("true" or 1 would pass as a boolean); the contract does not.
    Failures raise the same ValidationException, so the route's body error code applies.
    """
    field = request.route_handler.parsed_fn_signature.parameters.get("data")
    if field is None:
        return
    raw = await request.body()
    if not raw.strip() and field.is_optional:
        return
    try:
        msgspec.json.decode(raw, type=field.annotation, strict=True)
    except msgspec.DecodeError as exc:
        raise ValidationException(str(exc), extra=[{"message": str(exc), "key": "data"}]) from exc
