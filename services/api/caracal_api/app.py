"""The app factory: routes, the guard, the error mapper, OpenAPI, and resources per process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar, Request, Router, get
from litestar.enums import OpenAPIMediaType
from litestar.exceptions import ValidationException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.types import ASGIApp
from opentelemetry import trace
from opentelemetry.trace import Tracer

from caracal.db.engine import create_engine
from caracal.redis_client import connect
from caracal.settings import Settings
from caracal.telemetry import instrument_clients
from caracal_api.errors import handle_exception
from caracal_api.hooks import before_v1, strict_body
from caracal_api.metrics import HttpMetrics
from caracal_api.middleware import RequestContext
from caracal_api.openapi import OPENAPI_PLUGINS, mark_optional_bodies
from caracal_api.openapi_links import add_links
from caracal_api.resources import Resources
from caracal_api.routes.admin_audit import AdminAuditController, ZoneAdminAuditController
from caracal_api.routes.admin_tokens import AdminTokenController, local_bootstrap
from caracal_api.routes.applications import ApplicationController
from caracal_api.routes.common import invalid_request
from caracal_api.routes.decision_audit import DecisionAuditController
from caracal_api.routes.grants import GrantController
from caracal_api.routes.health import health, metrics, ready
from caracal_api.routes.invitations import InvitationController
from caracal_api.routes.outbox import OutboxController
from caracal_api.routes.policies import PolicyController, list_policy_templates, validate_policy
from caracal_api.routes.policy_sets import PolicySetController, bundle_public_key
from caracal_api.routes.provider_grants import ProviderGrantController
from caracal_api.routes.providers import ProviderController
from caracal_api.routes.resources import ResourceController
from caracal_api.routes.sessions import SessionController
from caracal_api.routes.step_up import StepUpChallengeController
from caracal_api.routes.teams import TeamController
from caracal_api.routes.zones import ZoneController


@get("/openapi.json", include_in_schema=False, media_type=OpenAPIMediaType.OPENAPI_JSON, sync_to_thread=False)
def openapi_json(request: Request[Any, Any, Any]) -> dict[str, Any]:
    return request.app.openapi_schema.to_schema()


def build_resources(settings: Settings) -> Resources:
    _, redis_url = settings.require_servers()
    redis = connect(redis_url, socket_timeout=5, socket_connect_timeout=2, health_check_interval=30)
    return Resources(settings=settings, engine=create_engine(settings), redis=redis)


def create_app(
    settings: Settings, resources: Resources | None = None, tracer: Tracer | None = None
) -> ASGIApp:
    """The ASGI app; `resources` may be given by tests that share one engine, `tracer` by tests that
    read spans (by default the process's tracer when OTEL_TRACES_EXPORTER is set; none otherwise,
    so an untraced request does not pay for a no-op span)."""
    res = resources or build_resources(settings)
    return bind_app(routes_app(res.settings.body_limit_bytes), res, tracer, owns=resources is None)


def bind_app(app: Litestar, res: Resources, tracer: Tracer | None = None, *, owns: bool = False) -> ASGIApp:
    """`app` serving with `res` (its state, its metrics, its request context). Building the routes
    is the expensive part (~0.3 s of signature parsing), so tests build them once and bind each
    test's resources to them."""
    http_metrics = HttpMetrics()
    res.audit.on_drop = http_metrics.audit_dropped.inc
    http_metrics.watch_pool(res.engine)
    app.state.resources = res
    app.state.http_metrics = http_metrics
    app.state.owns_resources = owns
    if tracer is None and res.settings.otel_traces_exporter != "none":
        tracer = trace.get_tracer("caracal.api")
        instrument_clients(res.engine, (res.redis, res.limits.redis))
    return RequestContext(app, res, http_metrics, tracer)


@asynccontextmanager
async def _lifespan(app: Litestar) -> AsyncIterator[None]:
    res: Resources = app.state.resources
    res.start()
    try:
        yield
    finally:
        await res.stop()
        if app.state.owns_resources:
            await res.redis.aclose()
            await res.engine.dispose()


def routes_app(body_limit_bytes: int) -> Litestar:
    """Every route, hook, error mapper and the OpenAPI document; resources come with `bind_app`."""
    v1 = Router(
        path="/",
        route_handlers=[
            ZoneController,
            ApplicationController,
            ResourceController,
            ProviderController,
            GrantController,
            ProviderGrantController,
            AdminTokenController,
            OutboxController,
            ZoneAdminAuditController,
            AdminAuditController,
            PolicyController,
            validate_policy,
            list_policy_templates,
            PolicySetController,
            bundle_public_key,
            StepUpChallengeController,
            TeamController,
            InvitationController,
            DecisionAuditController,
            SessionController,
            local_bootstrap,
        ],
        before_request=before_v1,
        security=[{"bearer": []}],
        exception_handlers={ValidationException: invalid_request},
    )
    return Litestar(
        route_handlers=[v1, health, ready, metrics, openapi_json],
        exception_handlers={Exception: handle_exception},
        plugins=list(OPENAPI_PLUGINS),
        on_startup=[mark_optional_bodies, add_links],
        before_request=strict_body,
        lifespan=[_lifespan],
        request_max_body_size=body_limit_bytes,
        openapi_config=OpenAPIConfig(
            title="Caracal control plane",
            version="0.1.0",
            # under /docs, the plugin's HTML catch-all `/{path}` cannot answer unknown root paths
            path="/docs",
            render_plugins=[SwaggerRenderPlugin(path="/"), JsonRenderPlugin(path="/openapi.json")],
            components=Components(security_schemes={"bearer": SecurityScheme(type="http", scheme="bearer")}),
        ),
        debug=False,
        logging_config=None,
    )
