"""GET /health, /ready and /metrics (CONTRACT.md §7.6), outside /v1 and without admin auth."""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable
from typing import Any, TypeVar

from litestar import MediaType, Request, Response, get
from litestar.di import Provide
from redis.exceptions import RedisError

from caracal.db.engine import autocommit
from caracal.db.migrate import head_revision, revision_of
from caracal.domain.dead_letters import dead_count
from caracal.errors import CaracalError, Unavailable
from caracal.events import CONTRACT_STREAMS
from caracal.health_facts import dispatch_stats, outbox_health
from caracal.reaper_stats import UnsealedTail, job_stats, unsealed_tail
from caracal_api.auth import client_ip
from caracal_api.metrics import HttpMetrics, outbox_lines, reaper_lines, sealer_lines
from caracal_api.ratelimit import minute_key, seconds_left_in_minute
from caracal_api.resources import ResourcesDep, provide_resources

T = TypeVar("T")
log = logging.getLogger("caracal.api.health")
DEPS = {"res": Provide(provide_resources, sync_to_thread=False)}
READY_REDIS_TIMEOUT_S = 1.0
PROMETHEUS = "text/plain; version=0.0.4; charset=utf-8"


@get("/health", dependencies=DEPS, include_in_schema=True, tags=["operations"], summary="Liveness")
async def health() -> dict[str, bool]:
    return {"ok": True}


def _not_ready(body: dict[str, Any]) -> Response[dict[str, Any]]:
    return Response({"ok": False, **body}, status_code=503)


@get("/ready", dependencies=DEPS, tags=["operations"], summary="Readiness: Postgres, Redis, schema, outbox")
async def ready(  # noqa: PLR0911 - one answer per reason, in the contract's order
    request: Request[Any, Any, Any], res: ResourcesDep
) -> Response[dict[str, Any]]:
    ip = client_ip(request, res.settings)
    if await res.limits.over(minute_key("api:ready_rl", ip), res.settings.ready_rate_limit_per_min):
        return Response(
            {"error": "rate_limited"}, status_code=429, headers={"Retry-After": str(seconds_left_in_minute())}
        )
    if res.draining:
        return _not_ready({"draining": True})
    try:
        async with autocommit(res.engine) as conn:
            revision = await revision_of(conn)
            dead = await dead_count(conn)
    except Unavailable as exc:
        # Only a database that does not answer is "unreachable"; any other failure is a bug, and
        # propagates to the error handler, which logs it with its traceback and answers 500.
        log.debug("ready: postgres unavailable: %s", exc)  # the 503 says it; probes come often
        return _not_ready({"error": "postgres_unreachable", "dependency": "postgres"})
    if revision != head_revision():
        return _not_ready({"error": "migrations_pending", "dependency": "postgres", "revision": revision})
    try:  # a hung Redis must not hold a probe longer than load balancers wait for it
        await asyncio.wait_for(res.redis.ping(), READY_REDIS_TIMEOUT_S)
    except (RedisError, OSError, TimeoutError) as exc:
        log.debug("ready: redis unavailable: %r", exc)
        return _not_ready({"error": "redis_unreachable", "dependency": "redis"})
    if dead > res.settings.outbox_ready_dead_max:
        return _not_ready(
            {"error": "outbox_dead_messages", "deadCount": dead, "limit": res.settings.outbox_ready_dead_max}
        )
    return Response({"ok": True})


@get("/metrics", dependencies=DEPS, tags=["operations"], summary="Prometheus metrics", media_type=PROMETHEUS)
async def metrics(request: Request[Any, Any, Any], res: ResourcesDep) -> Response[Any]:
    if not _metrics_allowed(res.settings.metrics_bearer, request.headers.get("authorization")):
        return Response({"error": "unauthorized"}, status_code=401, media_type=MediaType.JSON)
    http: HttpMetrics = request.app.state.http_metrics
    lines = list(http.render())
    health_by_stream: dict[str, Any] = {}
    tail: UnsealedTail | None = None
    try:
        async with autocommit(res.engine) as conn:
            health_by_stream = await outbox_health(conn)
            tail = await unsealed_tail(conn)
    except CaracalError:
        pass  # the database's gauges are left out; the scrape still has every worker's counters
    streams = sorted(set(CONTRACT_STREAMS) | set(health_by_stream))
    lines += outbox_lines(health_by_stream, await _dispatch_stats(res, streams))
    lines += sealer_lines(tail) + reaper_lines(await _reaper_stats(res))
    return Response("\n".join(lines) + "\n", media_type=PROMETHEUS)


def _metrics_allowed(bearer: str | None, authorization: str | None) -> bool:
    """Without METRICS_BEARER anyone may scrape; with it, the header must match in constant time."""
    if bearer is None:
        return True
    expected = f"Bearer {bearer}".encode()
    return hmac.compare_digest(expected, (authorization or "").encode())


async def _redis_figures(what: str, read: Awaitable[dict[str, dict[str, T]]]) -> dict[str, dict[str, T]]:
    """Figures kept in Redis, or none when it does not answer: a scrape still shows the rest."""
    try:
        return await read
    except Exception:
        log.warning("%s unavailable", what, exc_info=True)
        return {}


async def _dispatch_stats(res: ResourcesDep, streams: list[str]) -> dict[str, dict[str, Any]]:
    return await _redis_figures("dispatch counters", dispatch_stats(res.redis, streams))


async def _reaper_stats(res: ResourcesDep) -> dict[str, dict[str, float]]:
    return await _redis_figures("reaper figures", job_stats(res.redis))
