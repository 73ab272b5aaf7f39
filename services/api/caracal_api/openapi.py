"""What /openapi.json says beyond the handlers' types: every error a route answers, strict bodies.

Routes declare only the errors of their own rules (`responses=problems(409)`); the ones every
request path can answer (auth, malformed input, overload) are added here from what the route is,
so a new route is documented truthfully without repeating them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec
from litestar import Litestar
from litestar.config.app import AppConfig
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import OpenAPIType, Parameter, RequestBody, Schema
from litestar.plugins import InitPluginProtocol, ReceiveRoutePlugin
from litestar.routes import HTTPRoute

from caracal_api.errors import PROBLEM

if TYPE_CHECKING:
    from litestar._openapi.schema_generation import SchemaCreator
    from litestar.routes import BaseRoute
    from litestar.typing import FieldDefinition

from litestar._openapi.schema_generation.plugins.struct import StructSchemaPlugin

_DESCRIPTIONS = {
    400: "Malformed path parameter, query or body (`error` names the route's code)",
    401: "Missing, unknown or revoked admin token (`invalid_admin_token`)",
    403: "The token's scope or capability does not allow this route",
    404: "No such object in this zone (or route disabled)",
    409: "Conflicts with the current state",
    412: "If-Match holds no current ETag of the object (`precondition_failed`); nothing was written",
    413: "Body larger than API_BODY_LIMIT_BYTES (`payload_too_large`)",
    415: "Body is not JSON",
    422: "The body breaks a rule of the route, or its Idempotency-Key was used for another request"
    " in the last 24 h (`idempotency_key_reused`)",
    429: "Rate limited (`rate_limited`)",
    502: "An upstream service (a provider's token endpoint) failed",
    503: "A dependency does not answer, or the API is overloaded; retry later",
}


class Problem(msgspec.Struct):
    """RFC 9457 problem details carrying the contract's `error` code; some errors add members."""

    error: str
    type: str
    title: str
    status: int
    detail: str
    error_description: str  # the same text as detail, for the original's later clients


def problems(*statuses: int) -> dict[int, ResponseSpec]:
    """problem+json responses for these statuses, for a handler's `responses=`."""
    return {
        status: ResponseSpec(
            data_container=Problem,
            media_type=PROBLEM,
            description=_DESCRIPTIONS.get(status, "Error"),
            generate_examples=False,
        )
        for status in statuses
    }


def request_path_statuses(handler: HTTPRouteHandler, path: str, path_params: bool) -> set[int]:
    """What the guard, the decoder and the middleware can answer for this handler, whatever it does."""
    found = {503}
    if path.startswith("/v1/"):
        found.add(400)  # every /v1 route takes a path parameter, a query or a body
        if not handler.opt.get("public"):
            found |= {401, 403, 429}
    if path_params:
        found |= {400, 404}
    if "data" in handler.parsed_fn_signature.parameters:
        found |= {400, 413, 415}
    if takes_idempotency_key(handler, path):
        found |= {400, 409, 422}  # a bad key; a duplicate's race lost (rare); a reused key
    return found


def takes_idempotency_key(handler: HTTPRouteHandler, path: str) -> bool:
    """Every /v1 POST called with a token (README, "Retries and Idempotency-Key")."""
    return path.startswith("/v1/") and "POST" in handler.http_methods and not handler.opt.get("public")


class ProblemResponses(ReceiveRoutePlugin):
    """Adds the request path's problem+json responses to every route as the app registers it."""

    def receive_route(self, route: BaseRoute) -> None:
        if not isinstance(route, HTTPRoute):
            return
        for handler in route.route_handlers:
            if not handler.include_in_schema:
                continue
            statuses = request_path_statuses(handler, route.path, bool(route.path_parameters))
            handler.responses = {**problems(*sorted(statuses)), **(handler.responses or {})}


class StrictBodySchema(StructSchemaPlugin):
    """Struct schemas as Litestar writes them, plus `additionalProperties: false` for strict bodies."""

    def to_openapi_schema(self, field_definition: FieldDefinition, schema_creator: SchemaCreator) -> Schema:
        schema = super().to_openapi_schema(field_definition, schema_creator)
        info = msgspec.inspect.type_info(field_definition.type_)
        if isinstance(info, msgspec.inspect.StructType) and info.forbid_unknown_fields:
            schema.additional_properties = False
        return schema


def mark_optional_bodies(app: Litestar) -> None:
    """Litestar documents every request body as required; a handler whose `data` may be None
    (POST /v1/outbox/dead/requeue: no body means every stream) takes none, and the document says so."""
    paths = app.openapi_schema.paths or {}
    for route in app.routes:
        if not isinstance(route, HTTPRoute) or route.path_format not in paths:
            continue
        item = paths[route.path_format]
        for handler in route.route_handlers:
            data = handler.parsed_fn_signature.parameters.get("data")
            if data is None or not data.is_optional:
                continue
            for method in handler.http_methods:
                operation = getattr(item, method.lower(), None)
                if operation is not None and isinstance(operation.request_body, RequestBody):
                    operation.request_body.required = False


IDEMPOTENCY_KEY = Parameter(
    name="Idempotency-Key",
    param_in="header",
    required=False,
    description="A retry with the same key and request within 24 h gets the first response again"
    " (`idempotent-replayed: true`) and changes nothing; the key with another request is 422",
    schema=Schema(type=OpenAPIType.STRING, min_length=1, max_length=255, pattern="^[!-~]+$"),
)


def document_idempotency_key(app: Litestar) -> None:
    """The Idempotency-Key header on every operation that takes it (Litestar documents only the
    parameters of the handler's signature; the key is read by the /v1 hook)."""
    paths = app.openapi_schema.paths or {}
    for route in app.routes:
        if not isinstance(route, HTTPRoute) or route.path_format not in paths:
            continue
        operation = paths[route.path_format].post
        if operation is None or not any(takes_idempotency_key(h, route.path) for h in route.route_handlers):
            continue
        parameters = [p for p in operation.parameters or [] if p is not IDEMPOTENCY_KEY]
        operation.parameters = [*parameters, IDEMPOTENCY_KEY]  # once, however often start-up runs


class IdempotencyKeyHeader(InitPluginProtocol):
    """Documents the header once the app has built its document (at start-up)."""

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        app_config.on_startup.append(document_idempotency_key)
        return app_config


OPENAPI_PLUGINS = (ProblemResponses(), StrictBodySchema(), IdempotencyKeyHeader())
