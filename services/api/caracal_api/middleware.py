"""Outermost ASGI layer: request ids, the contract's security headers, HTTP metrics, audit rows."""

from __future__ import annotations

import contextlib
import re
import time
from typing import Any, cast

from litestar import Litestar
from litestar.exceptions import MethodNotAllowedException, NotFoundException
from litestar.types import HTTPResponseStartEvent, Message, Receive, Scope, Send
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from caracal import logs
from caracal.ids import new_request_id
from caracal_api.audit_trail import request_row
from caracal_api.metrics import HttpMetrics, method_label
from caracal_api.resources import Resources

access_log = logs.InfoLines("caracal.api.access")
REQUEST_ID = re.compile(r"^[A-Za-z0-9_.\-:]{1,128}$")
MUTATIONS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]


def request_id_from(scope: dict[str, Any]) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            candidate = bytes(value).decode("latin-1")
            if REQUEST_ID.match(candidate):
                return candidate
    return new_request_id()


_PROPAGATOR = TraceContextTextMapPropagator()


def _incoming_trace(scope: dict[str, Any]) -> Context:
    """The caller's W3C trace context (`traceparent`), so our span joins its trace."""
    carrier = {
        bytes(k).decode("latin-1"): bytes(v).decode("latin-1")
        for k, v in scope.get("headers", ())
        if k in (b"traceparent", b"tracestate")
    }
    return _PROPAGATOR.extract(carrier)


def _describe(span: Span, method: str, route: str, status: int, request_id: str) -> None:
    span.update_name(f"{method} {route}")
    span.set_attribute("http.request.method", method)
    span.set_attribute("http.route", route)
    span.set_attribute("http.response.status_code", status)
    span.set_attribute("caracal.request_id", request_id)
    if status >= 500:
        span.set_status(StatusCode.ERROR)


class RequestContext:
    """Wraps the whole app, so unmatched routes get the same headers as matched ones."""

    def __init__(
        self, app: Litestar, resources: Resources, metrics: HttpMetrics, tracer: Tracer | None
    ) -> None:
        self.app = app
        self.resources = resources
        self.metrics = metrics
        self.tracer = tracer

    async def _answer_options(self, scope: dict[str, Any], send: Send) -> bool:
        """OPTIONS lists every method of the path. Litestar's own answer names only the methods of one
        of the handlers sharing a path, so it is answered here (no token needed, as for a preflight)."""
        methods = allowed_methods(self.app, scope["path"])
        if not methods:
            return False
        allow = ", ".join(sorted([*methods, "OPTIONS"])).encode()
        start: HTTPResponseStartEvent = {
            "type": "http.response.start",
            "status": 204,
            "headers": [(b"allow", allow)],
        }
        await send(start)
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        scope["path_template"] = "options"
        return True

    async def __call__(self, asgi_scope: Scope, receive: Receive, send: Send) -> None:
        scope = cast("dict[str, Any]", asgi_scope)
        if scope["type"] != "http":
            await self.app(asgi_scope, receive, send)
            return
        self.resources.start()
        request_id = request_id_from(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        bound = logs.bind_request(request_id, scope["path"])
        is_v1 = scope["path"].startswith("/v1/")
        status = 500
        started = time.perf_counter()

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
                if is_v1:
                    headers.extend(SECURITY_HEADERS)
                message["headers"] = headers
            await send(message)

        tracing = (
            self.tracer.start_as_current_span(
                method_label(scope["method"]), context=_incoming_trace(scope), kind=SpanKind.SERVER
            )
            if self.tracer is not None
            else contextlib.nullcontext(None)
        )
        with tracing as span:
            try:
                if scope["method"] == "OPTIONS" and await self._answer_options(scope, send_with_headers):
                    return
                await self.app(asgi_scope, receive, send_with_headers)
            finally:
                template = str(scope.get("path_template", "unmatched"))
                elapsed = time.perf_counter() - started
                self.metrics.observe(scope["method"], template, status, elapsed)
                # the path template, never the path: a query or segment may carry what must not be logged
                access_log.info(f"{scope['method']} {template} {status} {elapsed * 1000:.1f} ms")
                logs.unbind(bound)
                if span is not None:
                    _describe(span, method_label(scope["method"]), template, status, request_id)
                if is_v1 and _needs_queued_audit(scope, status):
                    self.resources.audit.offer(request_row(scope, status))


ROUTABLE_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def allowed_methods(app: Litestar, path: str) -> list[str]:
    """Every method the app routes for `path` (none when the path matches no route)."""
    found = []
    for method in ROUTABLE_METHODS:
        try:
            app.asgi_router.handle_routing(path, method)
        except (NotFoundException, MethodNotAllowedException):
            continue
        found.append(method)
    return found


def _needs_queued_audit(scope: dict[str, Any], status: int) -> bool:
    """Failures of authenticated callers, and a mutation that did not audit in its transaction.
    Nobody authenticated, nothing written: a flood of bad tokens or unknown paths costs no rows."""
    state: dict[str, Any] = scope.get("state", {})
    if state.get("caller") is None or state.get("audited"):
        return False
    return status >= 400 or scope["method"] in MUTATIONS
