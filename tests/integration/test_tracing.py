"""Request spans: one server span per request, joined to the caller's W3C trace; exporters."""

import http.server
import os
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from typing import ClassVar

import httpx
import pytest_asyncio
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from caracal.settings import Settings
from caracal.telemetry import _exporter
from caracal_api.resources import Resources
from tests.app_pool import bound_app

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


@pytest_asyncio.fixture
async def traced(
    settings: Settings, resources: Resources, client: httpx.AsyncClient
) -> AsyncIterator[tuple[httpx.AsyncClient, InMemorySpanExporter]]:
    """An app whose spans land in memory (`client` has seeded the admin token)."""
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    with bound_app(resources, provider.get_tracer("test")) as app:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://caracal.test"
        ) as http:
            yield http, spans


async def test_request_span_joins_the_callers_trace(
    traced: tuple[httpx.AsyncClient, InMemorySpanExporter], admin: dict[str, str]
) -> None:
    """A traceparent header makes our server span a child in the caller's trace, named by route."""
    http, spans = traced
    headers = {**admin, "traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01", "x-request-id": "req-1"}
    assert (await http.get("/v1/zones", headers=headers)).status_code == 200
    [span] = spans.get_finished_spans()
    assert span.name == "GET /v1/zones"
    assert span.kind == SpanKind.SERVER
    assert format(span.context.trace_id, "032x") == TRACE_ID
    assert span.parent is not None
    assert format(span.parent.span_id, "016x") == PARENT_ID
    assert span.attributes is not None
    assert span.attributes["http.response.status_code"] == 200
    assert span.attributes["caracal.request_id"] == "req-1"


async def test_request_without_trace_starts_its_own_and_errors_are_marked(
    traced: tuple[httpx.AsyncClient, InMemorySpanExporter], admin: dict[str, str]
) -> None:
    """No traceparent: a new root span; a 4xx keeps status unset, the route template names it."""
    http, spans = traced
    assert (await http.get("/v1/zones/nope", headers=admin)).status_code == 404
    [span] = spans.get_finished_spans()
    assert span.parent is None
    assert span.name == "GET /v1/zones/{zone_id}"
    assert span.status.status_code == StatusCode.UNSET


def test_exporter_choice_follows_otel_traces_exporter() -> None:
    """`console` prints spans, `otlp` sends them over OTLP/HTTP, `none` traces nothing."""
    assert type(_exporter("console")).__name__ == "ConsoleSpanExporter"
    assert type(_exporter("otlp")).__name__ == "OTLPSpanExporter"
    assert _exporter("none") is None


class _Receiver(http.server.BaseHTTPRequestHandler):
    """An OTLP/HTTP endpoint: keeps what is posted to it."""

    received: ClassVar[list[tuple[str, str, bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        self.received.append((self.path, self.headers.get("content-type", ""), body))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return


EMIT_ONE_SPAN = """
from opentelemetry import trace
from caracal.telemetry import configure_tracing
configure_tracing("probe", "otlp")
with trace.get_tracer("probe").start_as_current_span("probe-span-7f3a"):
    pass
trace.get_tracer_provider().shutdown()
"""


def test_otlp_exporter_sends_the_process_spans_to_the_configured_endpoint() -> None:
    """OTEL_TRACES_EXPORTER=otlp: a span of the process reaches OTEL_EXPORTER_OTLP_ENDPOINT."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = {
            **os.environ,
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{server.server_address[1]}",
            "OTEL_BSP_SCHEDULE_DELAY": "50",
        }
        done = subprocess.run(
            [sys.executable, "-c", EMIT_ONE_SPAN], env=env, capture_output=True, timeout=60, check=False
        )
    finally:
        server.shutdown()
        server.server_close()
    assert done.returncode == 0, done.stderr.decode()
    [(path, content_type, body)] = _Receiver.received
    assert (path, content_type) == ("/v1/traces", "application/x-protobuf")
    assert b"probe-span-7f3a" in body and b"caracal-probe" in body  # span name, service.name


async def test_a_made_up_method_names_no_span(traced: tuple[httpx.AsyncClient, InMemorySpanExporter]) -> None:
    """The method a client invents before authentication folds into "other" in the span too."""
    http, spans = traced
    await http.request("XYZZY", "/v1/zones")
    [span] = spans.get_finished_spans()
    assert span.name.startswith("other ")
    assert span.attributes is not None
    assert span.attributes["http.request.method"] == "other"
