"""Decision-audit reads (CONTRACT.md §4.13) over rows the ingester writes: filters, pages, one request."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.api_helpers import make_zone
from tests.integration.people_rows import insert_audit_event

T0 = datetime(2026, 6, 3, 10, 0, tzinfo=UTC)
ROW_FIELDS = {
    "id",
    "zone_id",
    "event_type",
    "request_id",
    "decision",
    "evaluation_status",
    "metadata_json",
    "occurred_at",
    "ingested_at",
}
DETAIL_FIELDS = ROW_FIELDS | {
    "policy_set_id",
    "policy_set_version_id",
    "manifest_sha",
    "determining_policies_json",
    "diagnostics_json",
}


def url(zone_id: str, tail: str = "") -> str:
    return f"/v1/zones/{zone_id}/audit{tail}"


async def _zone(client: httpx.AsyncClient, admin: dict[str, str]) -> str:
    return str((await make_zone(client, admin))["id"])


async def test_list_answers_rows_newest_first_with_redacted_metadata(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    zone_id = await _zone(client, admin)
    older = await insert_audit_event(
        engine, zone_id, occurred_at=T0, metadata_json={"token": "t", "path": "/x"}
    )
    newer = await insert_audit_event(engine, zone_id, occurred_at=T0 + timedelta(seconds=1))
    response = await client.get(url(zone_id), headers=admin)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (
        set(body) == {"rows", "next_cursor"}
        and body["next_cursor"] is None
        and "link" not in response.headers
    )
    assert [row["id"] for row in body["rows"]] == [newer, older]
    assert set(body["rows"][1]) == ROW_FIELDS
    assert body["rows"][1]["metadata_json"] == {"token": "[redacted]", "path": "/x"}
    assert body["rows"][1]["occurred_at"] == "2026-06-03T10:00:00.000Z"


async def test_list_pages_by_cursor_without_skipping_rows_of_the_same_instant(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """Five rows, three of them in the same microsecond: pages of two hold each row once."""
    zone_id = await _zone(client, admin)
    made = [await insert_audit_event(engine, zone_id, occurred_at=T0) for _ in range(3)]
    made += [await insert_audit_event(engine, zone_id, occurred_at=T0 - timedelta(seconds=n)) for n in (1, 2)]
    seen, cursor, pages = [], None, 0
    while True:
        query = "?limit=2" + (f"&cursor={cursor}" if cursor else "")
        body = (await client.get(url(zone_id, query), headers=admin)).json()
        seen += [row["id"] for row in body["rows"]]
        pages += 1
        cursor = body["next_cursor"]
        assert (cursor is not None) == (len(body["rows"]) == 2)
        if cursor is None:
            break
    assert seen == sorted(made[:3], reverse=True) + made[3:] and pages == 3


async def test_list_default_page_is_100_and_at_most_1000(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    zone_id = await _zone(client, admin)
    for n in range(101):
        await insert_audit_event(engine, zone_id, occurred_at=T0 + timedelta(milliseconds=n))
    body = (await client.get(url(zone_id), headers=admin)).json()
    assert len(body["rows"]) == 100 and body["next_cursor"] is not None
    assert len((await client.get(url(zone_id, "?limit=1000"), headers=admin)).json()["rows"]) == 101


async def test_list_filters_combine(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """since inclusive, until exclusive, request_id, decision and event_type, alone and together."""
    zone_id = await _zone(client, admin)
    at = [T0 + timedelta(minutes=n) for n in range(4)]
    ids = [
        await insert_audit_event(engine, zone_id, occurred_at=at[0], decision="allow", request_id="r1"),
        await insert_audit_event(engine, zone_id, occurred_at=at[1], decision="deny", request_id="r1"),
        await insert_audit_event(
            engine, zone_id, occurred_at=at[2], decision="partial", event_type="tool.call"
        ),
        await insert_audit_event(engine, zone_id, occurred_at=at[3], decision="deny"),
    ]
    cases = {
        "?since=2026-06-03T10:01:00Z": [ids[3], ids[2], ids[1]],
        "?until=2026-06-03T10:01:00.000Z": [ids[0]],
        "?since=2026-06-03T10:01:00Z&until=2026-06-03T10:03:00Z": [ids[2], ids[1]],
        "?request_id=r1": [ids[1], ids[0]],
        "?decision=deny": [ids[3], ids[1]],
        "?event_type=tool.call": [ids[2]],
        "?decision=deny&request_id=r1": [ids[1]],
        "?decision=allow&event_type=tool.call": [],
    }
    for query, expected in cases.items():
        body = (await client.get(url(zone_id, query), headers=admin)).json()
        assert [row["id"] for row in body["rows"]] == expected, query


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("limit=0", "invalid_query"),
        ("limit=1001", "invalid_query"),
        ("limit=x", "invalid_query"),
        ("cursor=", "invalid_query"),
        ("cursor=bm90LWpzb24", "invalid_cursor"),
        ("decision=maybe", "invalid_query"),
        ("since=yesterday", "invalid_query"),
        ("until=2026-06-03T10:00:00%2B02:00", "invalid_query"),
        ("since=2026-02-30T00:00:00Z", "invalid_query"),
        ("request_id=", "invalid_query"),
        ("event_type=", "invalid_query"),
    ],
)
async def test_list_refuses_a_bad_query(
    client: httpx.AsyncClient, admin: dict[str, str], query: str, code: str
) -> None:
    zone_id = await _zone(client, admin)
    response = await client.get(url(zone_id, f"?{query}"), headers=admin)
    assert (response.status_code, response.json()["error"]) == (400, code), response.text


async def test_by_request_answers_its_detail_rows_oldest_first(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    zone_id = await _zone(client, admin)
    details = {
        "determining_policies_json": ["p1"],
        "diagnostics_json": {"why": "rule"},
        "policy_set_id": "ps1",
    }
    second = await insert_audit_event(
        engine, zone_id, request_id="r1", occurred_at=T0 + timedelta(seconds=1), **details
    )
    first = await insert_audit_event(
        engine, zone_id, request_id="r1", occurred_at=T0, metadata_json={"deep": [{"Client_Secret": "x"}]}
    )
    await insert_audit_event(engine, zone_id, request_id="r2", occurred_at=T0)
    response = await client.get(url(zone_id, "/by-request/r1"), headers=admin)
    assert response.status_code == 200, response.text
    rows = response.json()
    assert [row["id"] for row in rows] == [first, second] and set(rows[0]) == DETAIL_FIELDS
    assert rows[0]["metadata_json"] == {"deep": [{"Client_Secret": "[redacted]"}]}
    assert (rows[1]["determining_policies_json"], rows[1]["diagnostics_json"], rows[1]["policy_set_id"]) == (
        ["p1"],
        {"why": "rule"},
        "ps1",
    )


async def test_explain_names_the_denials_and_the_final_decision(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    zone_id = await _zone(client, admin)
    await insert_audit_event(engine, zone_id, request_id="r1", occurred_at=T0, decision="allow")
    denied = await insert_audit_event(
        engine,
        zone_id,
        request_id="r1",
        occurred_at=T0 + timedelta(seconds=1),
        decision="deny",
        determining_policies_json=["no-exports"],
        diagnostics_json={"rule": "deny_export"},
        metadata_json={"password": "p", "tool": "export"},
    )
    await insert_audit_event(
        engine, zone_id, request_id="r1", occurred_at=T0 + timedelta(seconds=2), decision="allow"
    )
    response = await client.get(url(zone_id, "/by-request/r1/explain"), headers=admin)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["request_id"], body["zone_id"], body["final_decision"]) == ("r1", zone_id, "deny")
    assert body["denied"] == [
        {
            "event_id": denied,
            "event_type": "authorization.decision",
            "evaluation_status": "ok",
            "determining_policies": ["no-exports"],
            "diagnostics": {"rule": "deny_export"},
            "metadata": {"password": "[redacted]", "tool": "export"},
        }
    ]
    assert len(body["events"]) == 3 and set(body["events"][0]) == DETAIL_FIELDS


async def test_explain_without_denials_takes_the_last_events_decision(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    zone_id = await _zone(client, admin)
    await insert_audit_event(engine, zone_id, request_id="r1", occurred_at=T0, decision="allow")
    await insert_audit_event(
        engine, zone_id, request_id="r1", occurred_at=T0 + timedelta(seconds=1), decision="partial"
    )
    body = (await client.get(url(zone_id, "/by-request/r1/explain"), headers=admin)).json()
    assert (body["final_decision"], body["denied"]) == ("partial", [])


@pytest.mark.parametrize("tail", ["/by-request/unknown", "/by-request/unknown/explain"])
async def test_a_request_without_events_in_the_zone_is_404_request_not_found(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine, tail: str
) -> None:
    zone_id, other = await _zone(client, admin), await _zone(client, admin)
    await insert_audit_event(engine, other, request_id="unknown", occurred_at=T0)
    response = await client.get(url(zone_id, tail), headers=admin)
    assert (response.status_code, response.json()["error"]) == (404, "request_not_found")
