"""One trace from a request to its stream entry: server span, SQL and Redis client spans, the outbox
row's traceparent, the dispatcher's batch span (linked) and the entry's signed `traceparent` field."""

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest_asyncio
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from caracal.events import CHANGES, verify
from caracal.settings import Settings
from caracal.telemetry import instrument_clients, uninstrument_clients
from caracal_api.resources import Resources
from caracal_dispatcher.dispatcher import Dispatcher
from caracal_dispatcher.leases import StreamLeases
from caracal_dispatcher.publisher import StreamPublisher
from caracal_reaper.jobs import OUTBOX_PRUNE
from caracal_reaper.runner import Reaper
from tests.app_pool import bound_app
from tests.support import HMAC_KEY_HEX

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


@pytest_asyncio.fixture
async def provider() -> tuple[TracerProvider, InMemorySpanExporter]:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    return tracer_provider, spans


@pytest_asyncio.fixture
async def traced(
    settings: Settings,
    resources: Resources,
    client: httpx.AsyncClient,
    provider: tuple[TracerProvider, InMemorySpanExporter],
) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its spans, and its engine's and Redis client's, in memory (`client` seeded the token)."""
    tracer_provider, _ = provider
    clients = (resources.redis, resources.limits.redis)
    instrument_clients(resources.engine, clients, tracer_provider)
    try:
        with bound_app(resources, tracer_provider.get_tracer("test")) as app:
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://caracal.test"
            ) as http:
                yield http
    finally:
        uninstrument_clients(clients)


def trace_id(span: ReadableSpan) -> str:
    assert span.context is not None
    return format(span.context.trace_id, "032x")


async def outbox_traceparents(engine: AsyncEngine) -> dict[str, str | None]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT id, traceparent FROM event_outbox"))
        return {row.id: row.traceparent for row in rows}


async def dispatch_once(settings: Settings, redis: Redis, tracer_provider: TracerProvider | None) -> None:
    tracer = tracer_provider.get_tracer("dispatcher") if tracer_provider else None
    publisher = StreamPublisher(redis, settings.streams_hmac_key, settings.outbox_stream_maxlen, tracer)
    dispatcher = Dispatcher(settings, publisher, StreamLeases(str(settings.database_url)))
    try:
        await dispatcher.iteration()
    finally:
        await dispatcher.leases.close()


async def change_entries(redis: Redis) -> dict[str, dict[str, str]]:
    """The `caracal.changes` entries by outbox id."""
    entries = [{k.decode(): v.decode() for k, v in raw.items()} for _, raw in await redis.xrange(CHANGES)]
    return {fields["outbox_id"]: fields for fields in entries}


async def test_one_request_trace_runs_from_server_span_to_the_stream_entry(
    traced: httpx.AsyncClient,
    provider: tuple[TracerProvider, InMemorySpanExporter],
    settings: Settings,
    resources: Resources,
    admin: dict[str, str],
) -> None:
    """POST /v1/zones under a caller's trace: every hop carries its trace id, and `_sig` covers it."""
    tracer_provider, spans = provider
    await resources.settled()
    before = set(await outbox_traceparents(resources.engine))
    response = await traced.post(
        "/v1/zones", json={"name": "Traced"}, headers={**admin, "traceparent": CALLER}
    )
    assert response.status_code == 201, response.text
    [(outbox_id, traceparent)] = [
        item for item in (await outbox_traceparents(resources.engine)).items() if item[0] not in before
    ]
    assert traceparent is not None and traceparent.split("-")[1] == TRACE_ID
    [server] = [span for span in spans.get_finished_spans() if span.kind == SpanKind.SERVER]
    assert trace_id(server) == TRACE_ID
    assert server.context is not None and traceparent.split("-")[2] == format(server.context.span_id, "016x")
    # (the test's own queries, outside any request, are root spans of traces of their own)
    clients = [span for span in spans.get_finished_spans() if span.kind == SpanKind.CLIENT]
    traced_clients = [span for span in clients if trace_id(span) == TRACE_ID]
    systems = {_attr(span, "db.system") or _attr(span, "db.system.name") for span in traced_clients}
    assert {"postgresql", "redis"} <= systems
    assert all(trace_id(span) == TRACE_ID for span in clients if span.parent is not None)
    insert = [span for span in clients if "INSERT" in str(_attr(span, "db.statement"))]
    assert insert and {trace_id(span) for span in insert} == {TRACE_ID}

    spans.clear()
    await dispatch_once(settings, resources.redis, tracer_provider)
    [batch] = [span for span in spans.get_finished_spans() if span.name == f"publish {CHANGES}"]
    assert batch.kind == SpanKind.PRODUCER
    assert TRACE_ID in {format(link.context.trace_id, "032x") for link in batch.links}
    entry = (await change_entries(resources.redis))[outbox_id]
    assert entry["traceparent"] == traceparent
    assert verify(bytes.fromhex(HMAC_KEY_HEX), CHANGES, entry)
    assert not verify(bytes.fromhex(HMAC_KEY_HEX), CHANGES, {**entry, "traceparent": CALLER})


def _attr(span: ReadableSpan, name: str) -> Any:
    return (span.attributes or {}).get(name)


async def test_an_untraced_request_leaves_no_traceparent_on_its_row_or_entry(
    client: httpx.AsyncClient, settings: Settings, resources: Resources, admin: dict[str, str]
) -> None:
    """Tracing off: the row's traceparent is NULL (even if the caller sent one) and the entry has none."""
    response = await client.post(
        "/v1/zones", json={"name": "Plain"}, headers={**admin, "traceparent": CALLER}
    )
    assert response.status_code == 201, response.text
    await resources.settled()
    rows = await outbox_traceparents(resources.engine)
    assert rows and set(rows.values()) == {None}
    await dispatch_once(settings, resources.redis, None)
    entries = await change_entries(resources.redis)
    assert set(entries) == set(rows)
    assert all("traceparent" not in entry for entry in entries.values())


async def test_each_reaper_job_run_is_a_span(
    settings: Settings,
    engine: AsyncEngine,
    redis: Redis,
    provider: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    """A job run is one span named after the job, with what it changed."""
    tracer_provider, spans = provider
    reaper = Reaper(settings, engine, redis, [OUTBOX_PRUNE])
    reaper.tracer = tracer_provider.get_tracer("reaper")
    await reaper.run_job(OUTBOX_PRUNE)
    [span] = spans.get_finished_spans()
    assert span.name == f"reaper {OUTBOX_PRUNE.name}"
    assert _attr(span, "caracal.reaper.ran") is True
    assert _attr(span, "caracal.reaper.rows_changed") == 0
