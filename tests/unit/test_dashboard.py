"""deploy/grafana/caracal.json charts exactly the series /metrics exposes, and every one an operator
needs: the names are read from the dashboard's PromQL and from the code's own exposition."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from caracal.reaper_stats import UnsealedTail
from caracal_api.metrics import HttpMetrics, outbox_lines, reaper_lines, sealer_lines

DASHBOARD = Path(__file__).parents[2] / "deploy" / "grafana" / "caracal.json"
# What an operator must see: request rate, latency and errors, the outbox backlog and lag, dispatch
# rate, the reaper's last successes, the sealer's tail and the database pools.
OPERATOR_SERIES = {
    "caracal_api_http_requests_total",
    "caracal_api_http_request_duration_seconds_bucket",
    "caracal_api_outbox_pending_total",
    "caracal_api_outbox_dead_total",
    "caracal_outbox_pending",
    "caracal_outbox_dead",
    "caracal_outbox_lag_seconds",
    "caracal_outbox_dispatched_total",
    "caracal_reaper_job_last_success_timestamp_seconds",
    "caracal_reaper_job_rows_total",
    "caracal_audit_unsealed_rows",
    "caracal_api_db_pool_in_use",
    "caracal_api_db_pool_waiting",
}
# Exposed but not charted, each for a reason.
NOT_CHARTED = {
    "caracal_api_http_request_seconds_total": "the histogram's _sum carries the same figure",
}


def _exposed_samples() -> set[str]:
    """Every sample name the code exposes, from the same functions /metrics renders with."""
    http = HttpMetrics()
    http.observe("GET", "/health", 200, 0.01)
    http.audit_dropped.inc()
    figures = {"pending": 1.0, "dead": 1.0, "oldest_pending": 1.0, "oldest_dead": 1.0}
    dispatch = {"dispatched": 1, "duplicates_skipped": 1, "failures": 1, "last_lag_ms": 5}
    lines = [
        *http.render(),
        *outbox_lines({"caracal.changes": figures}, {"caracal.changes": dispatch}),
        *sealer_lines(UnsealedTail(rows=2, oldest_age_s=1.5)),
        *reaper_lines({"audit-seal": {"runs": 1, "rows": 2, "failures": 0, "last_success": 1.0}}),
    ]
    families = text_string_to_metric_families("\n".join(lines) + "\n")
    return {sample.name for family in families for sample in family.samples}


def _expressions() -> list[str]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    return [target["expr"] for panel in panels for target in panel["targets"]]


def _charted() -> set[str]:
    return {name for expr in _expressions() for name in re.findall(r"\bcaracal_[a-z0-9_]+", expr)}


def test_dashboard_charts_only_series_the_code_exposes() -> None:
    exposed = _exposed_samples()
    assert _charted() <= exposed, sorted(_charted() - exposed)


def test_every_series_an_operator_needs_is_exposed_and_charted() -> None:
    missing_from_code = OPERATOR_SERIES - _exposed_samples()
    missing_from_dashboard = OPERATOR_SERIES - _charted()
    assert not missing_from_code, sorted(missing_from_code)
    assert not missing_from_dashboard, sorted(missing_from_dashboard)


def test_every_exposed_family_is_charted_or_left_out_for_a_reason() -> None:
    """A new series is charted or named in NOT_CHARTED; a histogram counts as charted by any part."""
    charted = {re.sub(r"_(bucket|sum|count)$", "", name) for name in _charted()}
    exposed = {re.sub(r"_(bucket|sum|count)$", "", name) for name in _exposed_samples()}
    assert exposed - charted == set(NOT_CHARTED), sorted(exposed - charted)


def test_every_panel_queries_the_chosen_prometheus_data_source() -> None:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    for panel in (p for p in dashboard["panels"] if p["type"] != "row"):
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
    assert [v["name"] for v in dashboard["templating"]["list"]] == ["datasource"]
