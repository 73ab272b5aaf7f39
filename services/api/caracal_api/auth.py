"""The admin-token guard: bearer lookup (cached), failed-auth limit, zone scope, capability, path params."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import unquote

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from caracal import logs
from caracal.db.engine import transaction
from caracal.domain.admin_tokens import touch_last_used
from caracal.domain.context import Actor, Caller
from caracal.errors import Forbidden, InvalidInput, RateLimited, Unauthorized
from caracal.ids import is_valid_param
from caracal.settings import Settings
from caracal_api.ratelimit import Window, minute_key, seconds_left_in_minute
from caracal_api.resources import Resources

MAX_TOKEN = 4096
ZONE_TOKEN_PATHS = ("/v1/policies/validate", "/v1/policy-templates")
LAST_USED_DEBOUNCE_S = 60


def forwarded_client(header: str, hops: int) -> str | None:
    """The client as our `hops` trusted proxies saw it: each appends the peer it received from, so
    the right-most entries are theirs and anything to the left of them is the client's own claim."""
    entries = [part.strip() for part in header.split(",") if part.strip()]
    return entries[-hops] if len(entries) >= hops else (entries[0] if entries else None)


def client_ip(connection: ASGIConnection[Any, Any, Any, Any], settings: Settings) -> str:
    """The socket peer; behind TRUST_PROXY, the X-Forwarded-For entry TRUST_PROXY_HOPS from the right."""
    if settings.trust_proxy:
        # every header line, in order: a proxy may add its own line rather than append (HAProxy does),
        # and the first line alone would be the client's claim
        header = ",".join(connection.headers.getall("x-forwarded-for", []))
        found = forwarded_client(header, settings.trust_proxy_hops)
        if found:
            return found
    return connection.client.host if connection.client else "unknown"


def bearer_token(header: str | None) -> str | None:
    if header is None or not header.startswith("Bearer "):
        return None
    token = header[len("Bearer ") :].strip()
    return token if 1 <= len(token) <= MAX_TOKEN else None


async def admin_guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """Runs before every /v1 handler; leaves the Caller in connection.state.caller."""
    res: Resources = connection.app.state.resources
    actor = await _authenticated(connection, res)
    connection.state.caller = Caller(actor, connection.state.request_id)
    logs.bind_actor(actor.id)
    _check_scope(actor, connection, handler)
    _check_capability(actor, str(connection.scope.get("method", "GET")), handler)
    for value in connection.path_params.values():
        if not isinstance(value, str) or not is_valid_param(value):
            raise InvalidInput(handler.opt.get("param_error", "invalid_params"), "malformed path parameter")
    await _count_request(connection, res, actor)


async def _authenticated(connection: ASGIConnection[Any, Any, Any, Any], res: Resources) -> Actor:
    token = bearer_token(connection.headers.get("authorization"))
    actor = await res.tokens.actor(token) if token is not None else None
    if actor is not None:
        return actor
    ip = client_ip(connection, res.settings)
    if await res.limits.over(minute_key("api:admin_auth_fail", ip), res.settings.auth_fail_limit_per_min):
        raise RateLimited(
            "rate_limited",
            "too many failed authentications from this address",
            retry_after_s=seconds_left_in_minute(),
        )
    raise Unauthorized("invalid_admin_token", "missing, unknown or revoked admin token")


async def _count_request(
    connection: ASGIConnection[Any, Any, Any, Any], res: Resources, actor: Actor
) -> None:
    """Both /v1 windows (address and token) and the last-used debounce: one Redis round trip at most."""
    limit = res.settings.v1_rate_limit_per_min
    touch = f"api:admin_token_touched:{actor.id}" if _touch_due(res, actor.id) else None
    if limit <= 0 and touch is None:
        return  # limits off and the token touched this minute: no key to build, nothing to ask
    ip = client_ip(connection, res.settings)
    windows = [
        Window(minute_key("api:v1_rl:ip", ip), limit),
        Window(minute_key("api:v1_rl:actor", actor.id), limit),
    ]
    over, fresh = await res.limits.count(windows, touch)
    if fresh:
        res.spawn(_touch(res, actor.id))
    if over:
        raise RateLimited("rate_limited", "too many requests", retry_after_s=seconds_left_in_minute())


def _check_scope(
    actor: Actor, connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    if actor.is_global:
        return
    if handler.opt.get("global_only"):
        raise Forbidden(handler.opt["global_only"], "this route needs a global admin token")
    path = unquote(connection.url.path)
    own = f"/v1/zones/{actor.zone_id}"
    if path == own or path.startswith(own + "/") or path.startswith(ZONE_TOKEN_PATHS):
        return
    raise Forbidden("admin_token_zone_mismatch", "this token is limited to its own zone")


def _check_capability(actor: Actor, method: str, handler: BaseRouteHandler) -> None:
    if method in ("GET", "HEAD") or actor.capability == "write":
        return
    if actor.capability == "approve":
        if handler.opt.get("approval"):
            return
        raise Forbidden("admin_token_approve_only", "an approve token may only read and satisfy challenges")
    raise Forbidden("admin_token_read_only", "a read token may only use GET and HEAD")


def _touch_due(res: Resources, token_id: str) -> bool:
    """Once a minute per token and process, before asking Redis (which debounces across replicas)."""
    now = time.monotonic()
    if now - res.touched.get(token_id, -LAST_USED_DEBOUNCE_S) < LAST_USED_DEBOUNCE_S:
        return False
    res.touched[token_id] = now
    return True


async def _touch(res: Resources, token_id: str) -> None:
    """last_used_at, at most once a minute per token across replicas."""
    async with transaction(res.engine) as conn:
        await touch_last_used(conn, token_id)
