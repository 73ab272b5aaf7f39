"""The migrated `step_up_challenges` and `audit_events` tables are the ones the STS and the audit
ingester expect (CONTRACT.md §9), read from the catalog and compared with literals written from the
contract, not with our own table definitions."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support import empty_database

TS = "timestamp with time zone"
# column -> (type, nullable, default), as CONTRACT.md §9 lists them
STEP_UP_COLUMNS = {
    "id": ("text", False, None),
    "zone_id": ("text", False, None),
    "session_id": ("text", True, None),
    "challenge_type": ("text", False, None),
    "metadata_json": ("jsonb", False, "'{}'::jsonb"),
    "created_at": (TS, False, "now()"),
    "expires_at": (TS, False, None),
    "satisfied_at": (TS, True, None),
    "challenge_secret_hash": ("bytea", True, None),
    "principal_id": ("text", True, None),
    "resource_set_hash": ("bytea", True, None),
    "consumed_at": (TS, True, None),
    "approver_subject_id": ("text", True, None),
}
AUDIT_COLUMNS = {
    "id": ("text", False, None),
    "zone_id": ("text", False, None),
    "event_type": ("text", False, None),
    "request_id": ("text", True, None),
    "decision": ("text", True, None),
    "policy_set_id": ("text", True, None),
    "policy_set_version_id": ("text", True, None),
    "manifest_sha": ("text", True, None),
    "evaluation_status": ("text", True, None),
    "determining_policies_json": ("jsonb", True, None),
    "diagnostics_json": ("jsonb", True, None),
    "metadata_json": ("jsonb", True, None),
    "occurred_at": (TS, False, None),
    "ingested_at": (TS, False, "now()"),
    "content_sha256": ("text", True, None),
    "prev_content_sha256": ("text", True, None),
    "chain_hmac": ("text", True, None),
    "chain_seq": ("bigint", True, None),
    "ingest_signature": ("text", True, None),
}
# (columns with DESC marks, predicate, unique) of each index that is not a key
STEP_UP_INDEXES = {
    (("session_id",), None, False),
    (("id",), "consumed_at IS NOT NULL", True),
    (("zone_id", "principal_id"), "consumed_at IS NULL", False),
    (("approver_subject_id",), "approver_subject_id IS NOT NULL", False),
}
AUDIT_INDEXES = {
    (("zone_id", "occurred_at DESC"), None, False),
    (("request_id",), "request_id IS NOT NULL", False),
    (("zone_id", "chain_seq DESC"), None, False),
}

_COLUMNS = """
SELECT column_name, data_type, is_nullable, column_default FROM information_schema.columns
 WHERE table_schema = 'public' AND table_name = :table
"""
_CONSTRAINTS = """
SELECT k.contype::text AS contype, pg_get_constraintdef(k.oid) AS definition,
       ARRAY(SELECT a.attname::text FROM unnest(k.conkey) WITH ORDINALITY AS c(n, i)
             JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = c.n ORDER BY c.i) AS columns,
       f.relname AS referenced, k.confdeltype::text AS on_delete
  FROM pg_constraint k LEFT JOIN pg_class f ON f.oid = k.confrelid
 WHERE k.conrelid = CAST(:table AS regclass) AND k.contype <> 'n'
"""
_INDEXES = """
SELECT ARRAY(SELECT a.attname::text || CASE WHEN i.indoption[c.o - 1] & 1 = 1 THEN ' DESC' ELSE '' END
               FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS c(n, o)
               JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = c.n ORDER BY c.o) AS columns,
       pg_get_expr(i.indpred, i.indrelid) AS predicate, i.indisunique AS is_unique
  FROM pg_index i
 WHERE i.indrelid = CAST(:table AS regclass)
   AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)
"""


async def _read(engine: AsyncEngine, query: str, table: str) -> list[Any]:
    async with engine.connect() as conn:
        return list((await conn.execute(text(query), {"table": table})).all())


async def _columns(engine: AsyncEngine, table: str) -> dict[str, tuple[str, bool, str | None]]:
    rows = await _read(engine, _COLUMNS, table)
    return {r.column_name: (r.data_type, r.is_nullable == "YES", r.column_default) for r in rows}


async def _indexes(engine: AsyncEngine, table: str) -> list[tuple[tuple[str, ...], str | None, bool]]:
    rows = await _read(engine, _INDEXES, table)
    return [(tuple(r.columns), _predicate(r.predicate), r.is_unique) for r in rows]


def _predicate(expression: str | None) -> str | None:
    """Postgres' rendering `(consumed_at IS NOT NULL)` written as the contract does."""
    return None if expression is None else expression.replace("::text", "").strip("()")


async def test_step_up_challenges_columns_match_the_contract(engine: AsyncEngine) -> None:
    """Every column with its type, nullability and default, and no other column."""
    assert await _columns(engine, "step_up_challenges") == STEP_UP_COLUMNS


async def test_step_up_challenges_keys_and_checks_match_the_contract(engine: AsyncEngine) -> None:
    """Primary key id, a cascading foreign key to zones, the challenge_type check; nothing else."""
    rows = await _read(engine, _CONSTRAINTS, "step_up_challenges")
    found = sorted((r.contype, tuple(r.columns), r.referenced, r.on_delete) for r in rows)
    assert found == [
        ("c", ("challenge_type",), None, " "),
        ("f", ("zone_id",), "zones", "c"),
        ("p", ("id",), None, " "),
    ]
    (check,) = (r for r in rows if r.contype == "c")
    assert set(re.findall(r"'([^']*)'::text", check.definition)) == {
        "human_approval",
        "mfa",
        "software_attestation",
    }


async def test_step_up_challenges_indexes_match_the_contract(engine: AsyncEngine) -> None:
    found = await _indexes(engine, "step_up_challenges")
    assert set(found) == STEP_UP_INDEXES and len(found) == len(STEP_UP_INDEXES)


async def test_audit_events_columns_match_the_contract(engine: AsyncEngine) -> None:
    assert await _columns(engine, "audit_events") == AUDIT_COLUMNS


async def test_audit_events_is_range_partitioned_by_occurred_at_with_a_default_partition(
    engine: AsyncEngine,
) -> None:
    """Primary key (id, occurred_at), no other key; RANGE (occurred_at); one DEFAULT partition."""
    rows = await _read(engine, _CONSTRAINTS, "audit_events")
    assert [(r.contype, tuple(r.columns)) for r in rows] == [("p", ("id", "occurred_at"))]
    async with engine.connect() as conn:
        strategy = (
            await conn.execute(text("SELECT pg_get_partkeydef(CAST('audit_events' AS regclass))"))
        ).scalar_one()
        partitions = (
            (
                await conn.execute(
                    text(
                        "SELECT pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i"
                        " JOIN pg_class c ON c.oid = i.inhrelid"
                        " WHERE i.inhparent = CAST('audit_events' AS regclass)"
                    )
                )
            )
            .scalars()
            .all()
        )
    assert strategy == "RANGE (occurred_at)"
    assert partitions == ["DEFAULT"]


async def test_audit_events_indexes_match_the_contract(engine: AsyncEngine) -> None:
    found = await _indexes(engine, "audit_events")
    assert set(found) == AUDIT_INDEXES and len(found) == len(AUDIT_INDEXES)


async def test_rows_in_audit_events_partitions_are_emptied_between_tests(
    engine: AsyncEngine, truncate_all: str
) -> None:
    """The truncation lists the partitioned table, not its partitions: a row in one is emptied too."""
    async with engine.begin() as conn:
        await conn.execute(
            text("INSERT INTO zones (id, name, slug, dek_ciphertext) VALUES ('z', 'Z', 'z', '\\x00')")
        )
        await conn.execute(
            text(
                "INSERT INTO audit_events (id, zone_id, event_type, occurred_at)"
                " VALUES ('a', 'z', 'decision', :at)"
            ),
            {"at": datetime(2026, 6, 3, tzinfo=UTC)},
        )
    assert "audit_events_default" not in truncate_all and '"audit_events"' in truncate_all
    await empty_database(engine, truncate_all)
    async with engine.connect() as conn:
        left = (await conn.execute(text("SELECT count(*) FROM audit_events_default"))).scalar_one()
    assert left == 0
