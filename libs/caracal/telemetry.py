"""Logging and tracing set-up shared by every process (secrets are never passed to either)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from caracal.db.query import statements_traced
from caracal.logs import JsonFormatter, LineHandler

log = logging.getLogger("caracal.telemetry")
_PROPAGATOR = TraceContextTextMapPropagator()


def configure_logging(level: str, process: str, log_format: str = "json") -> None:
    """LOG_FORMAT `json`: one JSON object per line (caracal.logs); `text`: a line for a person.
    Every logger, uvicorn's included (it is started without a log config), goes through this handler."""
    handler = LineHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter(process)
        if log_format == "json"
        else logging.Formatter(f"%(asctime)s %(levelname)s {process} %(name)s: %(message)s")
    )
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    for noisy in ("asyncio", "uvicorn.access", "alembic.runtime.migration"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))


def configure_tracing(process: str, exporter_name: str) -> bool:
    """OTEL_TRACES_EXPORTER: `console` prints spans, `otlp` sends them (to OTEL_EXPORTER_OTLP_ENDPOINT,
    which alone selects `otlp`), `none` keeps the no-op tracer. True when spans are now recorded."""
    exporter = _exporter(exporter_name)
    if exporter is None:
        return False
    provider = TracerProvider(resource=Resource.create({"service.name": f"caracal-{process}"}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    log.info("tracing: spans go to the %s exporter", exporter_name)
    return True


def _exporter(name: str) -> SpanExporter | None:
    if name == "console":
        return ConsoleSpanExporter()
    if name == "otlp":
        return OTLPSpanExporter()
    return None


def instrument_clients(
    engine: AsyncEngine, redis_clients: Sequence[Redis], provider: trace.TracerProvider | None = None
) -> None:
    """Client spans for every SQL statement of `engine` and every command of the Redis clients. Called
    only when tracing is on: an untraced process keeps its drivers unwrapped and pays nothing per call."""
    # the instrumentation declares sqlalchemy < 2.1; the engine events it listens to are unchanged in
    # 2.1 (tests/integration/test_tracing_pipeline.py sees the statement spans)
    SQLAlchemyInstrumentor().instrument(
        engine=engine.sync_engine, tracer_provider=provider, skip_dep_check=True
    )
    statements_traced(True)  # hot statements leave the driver path for the instrumented engine
    for redis in redis_clients:
        RedisInstrumentor.instrument_client(redis, tracer_provider=provider)


def uninstrument_clients(redis_clients: Sequence[Redis]) -> None:
    SQLAlchemyInstrumentor().uninstrument()
    statements_traced(False)
    for redis in redis_clients:
        RedisInstrumentor.uninstrument_client(redis)


def current_traceparent() -> str | None:
    """The W3C `traceparent` of the current span, when one is being recorded (else None: untraced
    work leaves no trace context behind, e.g. on its outbox rows)."""
    span = trace.get_current_span()
    if not span.is_recording():
        return None
    ctx = span.get_span_context()
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{ctx.trace_flags:02x}"


def link_to(traceparent: str | None) -> trace.Link | None:
    """A link to the span a stored `traceparent` names (None when absent or malformed)."""
    if not traceparent:
        return None
    ctx = trace.get_current_span(_PROPAGATOR.extract({"traceparent": traceparent})).get_span_context()
    return trace.Link(ctx) if ctx.is_valid else None
