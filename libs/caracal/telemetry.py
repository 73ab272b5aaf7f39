"""Logging and tracing set-up shared by every process (secrets are never passed to either)."""

from __future__ import annotations

import importlib
import logging
import sys

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

log = logging.getLogger("caracal.telemetry")


def configure_logging(level: str, process: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format=f"%(asctime)s %(levelname)s {process} %(name)s: %(message)s",
        force=True,
    )
    for noisy in ("asyncio", "uvicorn.access", "alembic.runtime.migration"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))


def configure_tracing(process: str, exporter_name: str) -> None:
    """OTEL_TRACES_EXPORTER: `console` prints spans, `otlp` sends them (needs the OTLP exporter
    package, configured by the usual OTEL_EXPORTER_OTLP_* variables), `none` keeps the no-op tracer."""
    exporter = _exporter(exporter_name)
    if exporter is None:
        return
    provider = TracerProvider(resource=Resource.create({"service.name": f"caracal-{process}"}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    log.info("tracing: spans go to the %s exporter", exporter_name)


def _exporter(name: str) -> SpanExporter | None:
    if name == "console":
        return ConsoleSpanExporter()
    if name == "otlp":
        try:
            module = importlib.import_module("opentelemetry.exporter.otlp.proto.http.trace_exporter")
        except ImportError:
            log.warning(
                "OTEL_TRACES_EXPORTER=otlp needs opentelemetry-exporter-otlp-proto-http; tracing is off"
            )
            return None
        exporter: SpanExporter = module.OTLPSpanExporter()
        return exporter
    return None
