"""Prometheus text exposition: HTTP counters of every worker, outbox gauges and dispatch counters."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any, cast

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
cast("Any", disable_created_metrics)()  # no `_created` series beside every counter (untyped upstream)


def _labels(**labels: str) -> str:
    inner = ",".join(
        f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for k, v in labels.items()
    )
    return "{" + inner + "}" if inner else ""


# The method is chosen by the client before authentication: anything else is counted as "other", so
# made-up methods cannot grow the label set (and the memory of this process) without bound.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"})


def method_label(method: str) -> str:
    return method if method in KNOWN_METHODS else "other"


class HttpMetrics:
    """Request counters and latency histograms (prometheus-client). Under the supervisor each worker
    writes its values to PROMETHEUS_MULTIPROC_DIR and any worker's /metrics adds them all up."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "caracal_api_http_requests",
            "HTTP requests answered, by route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.seconds = Counter(
            "caracal_api_http_request_seconds",
            "Time spent answering, by route.",
            ["method", "route"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "caracal_api_http_request_duration_seconds",
            "Latency of answers, by route.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.audit_dropped = Counter(
            "caracal_api_audit_dropped",
            "Audit rows of failed requests dropped because the audit queue was full.",
            registry=self.registry,
        )

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        method = method_label(method)
        self.requests.labels(method, route, str(status)).inc()
        self.seconds.labels(method, route).inc(seconds)
        self.latency.labels(method, route).observe(seconds)

    def render(self) -> Iterable[str]:
        registry = self.registry
        if os.environ.get(MULTIPROC_DIR):
            registry = CollectorRegistry()
            cast("Any", multiprocess.MultiProcessCollector)(registry)  # untyped upstream
        yield from generate_latest(registry).decode().splitlines()


def gauge(name: str, help_text: str, value: float, kind: str = "gauge") -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name} {value:g}"]


def per_stream(name: str, help_text: str, values: Mapping[str, float], kind: str = "gauge") -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    lines.extend(f"{name}{_labels(stream=stream)} {value:g}" for stream, value in sorted(values.items()))
    return lines


def outbox_lines(
    health: Mapping[str, Mapping[str, float]], dispatch: Mapping[str, Mapping[str, Any]]
) -> list[str]:
    """The contract's four gauges, then per-stream pending, dead, lag and dispatch counters."""
    lines = [
        *gauge(
            "caracal_api_outbox_pending_total",
            "Outbox events not yet dispatched.",
            sum(s["pending"] for s in health.values()),
        ),
        *gauge(
            "caracal_api_outbox_dead_total",
            "Outbox events dead-lettered.",
            sum(s["dead"] for s in health.values()),
        ),
        *gauge(
            "caracal_api_outbox_oldest_pending_age_seconds",
            "Age of the oldest pending event.",
            max((s["oldest_pending"] for s in health.values()), default=0),
        ),
        *gauge(
            "caracal_api_outbox_oldest_dead_age_seconds",
            "Age of the oldest dead-lettered event.",
            max((s["oldest_dead"] for s in health.values()), default=0),
        ),
        *per_stream(
            "caracal_outbox_pending",
            "Pending events per stream.",
            {k: v["pending"] for k, v in health.items()},
        ),
        *per_stream(
            "caracal_outbox_dead",
            "Dead-lettered events per stream.",
            {k: v["dead"] for k, v in health.items()},
        ),
        *per_stream(
            "caracal_outbox_lag_seconds",
            "Age of the oldest pending event per stream.",
            {k: v["oldest_pending"] for k, v in health.items()},
        ),
    ]
    for field, help_text in (
        ("dispatched", "Entries added to the stream by dispatchers."),
        ("duplicates_skipped", "Entries a dispatcher re-sent that the high-water mark kept out."),
        ("failures", "Failed publish attempts."),
    ):
        values = {stream: float(stats.get(field, 0)) for stream, stats in dispatch.items()}
        lines += per_stream(f"caracal_outbox_{field}_total", help_text, values, kind="counter")
    lines += per_stream(
        "caracal_outbox_last_dispatch_lag_seconds",
        "Commit-to-stream lag of the last dispatched batch.",
        {stream: float(stats.get("last_lag_ms", 0)) / 1000 for stream, stats in dispatch.items()},
    )
    return lines
