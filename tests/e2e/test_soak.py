"""`make soak` in one minute: the same code (bench/soak.py) at a rate the shared CI cores can carry."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from bench.soak import Plan, run_soak

pytestmark = pytest.mark.e2e
SECONDS = 60.0
RATE = 25.0  # requests/s in total, a fraction of this machine's capacity, so other tests keep theirs


async def test_a_minute_of_mixed_traffic_over_two_replicas_has_no_5xx_loses_nothing_and_stays_flat(
    tmp_path: Path,
) -> None:
    """Two API replicas, two dispatchers, 32 connections, GET/list/POST/PATCH/DELETE for a minute:
    no 5xx or unanswered request, every event once in order, no process's memory growing past the bound."""
    calls = tmp_path / "calls.csv"
    outcome = await run_soak(Plan(seconds=SECONDS, rate=RATE, calls_path=calls))
    print("\n".join(outcome.lines))
    assert not outcome.failures, "\n".join([*outcome.failures, *outcome.lines])
    # open loop: a saturated machine falls behind the schedule; half of it is still a minute of load
    assert outcome.requests >= 0.5 * SECONDS * RATE, f"load fell far behind: {outcome.lines}"
    with calls.open() as written:
        rows = list(csv.DictReader(written))
    assert len(rows) == outcome.requests, "SOAK_CALLS holds every measured call"
    assert {r["kind"] for r in rows} <= {"get", "list", "post", "patch", "delete"}, rows[:3]
    assert all(float(r["ms"]) > 0 and r["status"].isdigit() for r in rows), rows[:3]
