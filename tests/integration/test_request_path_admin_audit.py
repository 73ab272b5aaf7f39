"""The admin audit reads' budgets, counted at the Postgres wire (tests/integration/wire_budget.py)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from caracal.domain.audit import audit_row, insert_audit_rows
from caracal.domain.context import Caller
from tests.integration.wire_budget import Counted, measure

BUDGETS = {"get_list": 1}


async def _rows(engine: AsyncEngine, count: int, zone_id: str) -> None:
    rows = [
        audit_row(Caller(None, None), action="POST /v1/x", method="POST", zone_id=zone_id)
        for _ in range(count)
    ]
    async with engine.begin() as conn:
        await insert_audit_rows(conn, rows)


async def test_a_page_of_500_audit_rows_is_one_round_trip_zone_and_global(
    counted: Counted, engine: AsyncEngine
) -> None:
    """Filtered or not, zone or global: one statement, whatever the page size."""
    await _rows(engine, 600, "zb")
    for url in (
        "/v1/zones/zb/admin-audit?limit=500",
        "/v1/admin-audit?limit=500",
        "/v1/admin-audit?zone_id=zb&method=POST&since=2000-01-01T00:00:00Z&limit=500",
    ):
        assert await measure(counted, "GET", url) <= BUDGETS["get_list"], url
