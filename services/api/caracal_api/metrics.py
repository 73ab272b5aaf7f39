"""Prometheus text exposition: HTTP counters and pool gauges of every worker, outbox gauges and
dispatch counters, the reaper's figures per job and the audit sealer's backlog."""

from __future__ import annotations

import glob
import os
import time
import weakref
from collections.abc import Iterable, Mapping
from typing import Any, cast

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import ConnectionPoolEntry, QueuePool

from caracal.reaper_stats import UnsealedTail

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
IN_USE_EVERY_S = 0.25  # how stale another worker's in_use figure may be in a scrape
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
        self._series: dict[tuple[str, str, int], tuple[Any, Any, Any]] = {}
        self._watch: _PoolWatch | None = None
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
        # livesum: the replica's figure is the sum over its live workers (a restarted worker's old
        # values are dropped by the supervisor, prometheus_client's mark_process_dead)
        self.pool = {
            figure: Gauge(
                f"caracal_api_db_pool_{figure}",
                help_text,
                registry=self.registry,
                multiprocess_mode="livesum",
            )
            for figure, help_text in (
                ("connections", "Database connections the workers' pools may hold."),
                ("in_use", "Database connections checked out of the pools now."),
                ("waiting", "Requests waiting for a free database connection now."),
            )
        }

    def watch_pool(self, engine: AsyncEngine) -> None:
        """Keep the pool gauges current as connections are checked out and in."""
        pool = engine.sync_engine.pool
        if not isinstance(pool, QueuePool):
            return
        watch = _WATCHES.get(pool) or _PoolWatch(pool)
        _WATCHES[pool] = watch
        watch.gauges = self.pool
        self._watch = watch
        self.pool["connections"].set(pool.size())

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method_label(method), route, status)  # route templates and statuses are few: bounded
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = self._series_of(*key)
        requests, spent, latency = series
        requests.inc()
        spent.inc(seconds)
        latency.observe(seconds)

    def _series_of(self, method: str, route: str, status: int) -> tuple[Any, Any, Any]:
        """The labelled children of one (method, route, status), looked up once (labels() takes a
        lock and builds a tuple per call)."""
        return (
            self.requests.labels(method, route, str(status)),
            self.seconds.labels(method, route),
            self.latency.labels(method, route),
        )

    def render(self) -> Iterable[str]:
        watch = self._watch
        if watch is not None and watch.gauges is self.pool:  # a later app on this pool took the watch
            watch.write(watch.pool.checkedout())
        registry = self.registry
        if os.environ.get(MULTIPROC_DIR):
            registry = CollectorRegistry()
            registry.register(_WrittenFiles(os.environ[MULTIPROC_DIR]))
        yield from generate_latest(registry).decode().splitlines()


def _number(value: float) -> str:
    """Every digit (`%g` would print a Unix time or a large counter as 1.76e+09)."""
    value = float(value)
    return str(int(value)) if value.is_integer() else repr(value)


def gauge(name: str, help_text: str, value: float, kind: str = "gauge") -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name} {_number(value)}"]


def per_stream(name: str, help_text: str, values: Mapping[str, float], kind: str = "gauge") -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    lines.extend(f"{name}{_labels(stream=s)} {_number(value)}" for s, value in sorted(values.items()))
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


class _WrittenFiles(multiprocess.MultiProcessCollector):
    """prometheus_client's sum over every worker's file, minus files still empty: a worker starting
    creates its file before writing its header, and reading it then failed the scrape with a 500."""

    def __init__(self, path: str) -> None:
        cast("Any", multiprocess.MultiProcessCollector.__init__)(self, None, path)  # untyped upstream

    def collect(self) -> Iterable[Any]:
        files = [name for name in glob.glob(os.path.join(self._path, "*.db")) if _written(name)]
        merged: Iterable[Any] = cast("Any", self.merge)(files, accumulate=True)
        return merged


def _written(name: str) -> bool:
    try:
        return os.path.getsize(name) > 0
    except FileNotFoundError:  # a dead worker's file, removed since the listing
        return False


class _PoolWatch:
    """Installed once per pool (tests build many apps on one engine); the latest app's gauges count."""

    def __init__(self, pool: QueuePool) -> None:
        self.gauges: dict[str, Gauge] = {}
        self.pool = pool
        self.written = 0  # the in_use value last written to the gauge
        self.next_write = 0.0
        in_pool = pool.checkedout
        # the checkout event comes after the connection left the pool, checkin before it is back
        event.listen(pool, "checkout", lambda *_: self.in_use(in_pool()))
        event.listen(pool, "checkin", lambda *_: self.in_use(in_pool() - 1))
        get = pool._do_get

        def counted_get() -> ConnectionPoolEntry:
            """QueuePool's blocking get (no event marks its start): waiters are counted around it."""
            if pool.checkedin() > 0:
                return get()
            self.gauges["waiting"].inc()
            try:
                return get()
            finally:
                self.gauges["waiting"].dec()

        setattr(pool, "_do_get", counted_get)  # noqa: B010 - an instance's override of the pool's own method

    def in_use(self, count: int) -> None:
        """Written at most every IN_USE_EVERY_S, and at once when the pool falls idle: a gauge write
        (an mmap'd value under a lock) per checkout and checkin was 2 % of a GET's CPU. A scrape
        writes its own worker's exact figure first (`HttpMetrics.render`)."""
        now = time.monotonic()
        if (count == 0 and self.written != 0) or now >= self.next_write:
            self.write(count)
            self.next_write = now + IN_USE_EVERY_S

    def write(self, count: int) -> None:
        self.gauges["in_use"].set(count)
        self.written = count


_WATCHES: weakref.WeakKeyDictionary[QueuePool, _PoolWatch] = weakref.WeakKeyDictionary()


def sealer_lines(tail: UnsealedTail | None) -> list[str]:
    if tail is None:
        return []
    return [
        *gauge("caracal_audit_unsealed_rows", "Admin audit rows the sealer has not chained yet.", tail.rows),
        *gauge(
            "caracal_audit_oldest_unsealed_age_seconds",
            "How long the oldest unsealed admin audit row has waited.",
            tail.oldest_age_s,
        ),
    ]


REAPER_SERIES = (
    ("runs", "caracal_reaper_job_runs_total", "Completed runs of each reaper job.", "counter"),
    ("rows", "caracal_reaper_job_rows_total", "Rows each reaper job changed or removed.", "counter"),
    ("events", "caracal_reaper_job_events_total", "Outbox events each reaper job wrote.", "counter"),
    ("failures", "caracal_reaper_job_failures_total", "Failed runs of each reaper job.", "counter"),
    (
        "last_success",
        "caracal_reaper_job_last_success_timestamp_seconds",
        "When each reaper job last completed a run (Unix time).",
        "gauge",
    ),
)


def reaper_lines(stats: Mapping[str, Mapping[str, float]]) -> list[str]:
    lines: list[str] = []
    for figure, name, help_text, kind in REAPER_SERIES:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        lines.extend(
            f"{name}{_labels(job=job)} {_number(got.get(figure, 0))}" for job, got in sorted(stats.items())
        )
    return lines
