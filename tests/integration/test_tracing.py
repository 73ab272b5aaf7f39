"""Request spans: one server span per request, joined to the caller's W3C trace."""

from collections.abc import AsyncIterator

import httpx
import pytest_asyncio
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from caracal.settings import Settings
from caracal.telemetry import _exporter
from caracal_api.app import create_app
from caracal_api.resources import Resources

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
    app = create_app(settings, resources, provider.get_tracer("test"))
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
    """`console` prints spans; `none` traces nothing; `otlp` without its package is off, not a crash."""
    assert type(_exporter("console")).__name__ == "ConsoleSpanExporter"
    assert _exporter("none") is None
    assert _exporter("otlp") is None
