"""The migrated `agent_sessions` and `delegation_edges` are the tables the coordinator expects
(CONTRACT.md §9), read from the catalog and compared with literals written from the contract, not
with our own table definitions."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

TS = "timestamp with time zone"
# table -> column -> (type, nullable, default), as CONTRACT.md §9 lists them
COLUMNS: dict[str, dict[str, tuple[str, bool, str | None]]] = {
    "agent_sessions": {
        "id": ("text", False, None),
        "zone_id": ("text", False, None),
        "application_id": ("text", False, None),
        "parent_id": ("text", True, None),
        "subject_session_id": ("text", False, None),
        "status": ("text", False, "'active'::text"),
        "depth": ("integer", False, "0"),
        "capabilities": ("ARRAY", False, "'{}'::text[]"),
        "max_children": ("integer", False, "10"),
        "child_count": ("integer", False, "0"),
        "spawned_at": (TS, False, "now()"),
        "last_active_at": (TS, False, "now()"),
        "terminated_at": (TS, True, None),
        "ttl_seconds": ("integer", False, "3600"),
        "metadata_json": ("jsonb", True, None),
        "updated_at": (TS, False, "now()"),
        "agent_kind": ("text", False, "'ephemeral'::text"),
        "last_heartbeat_at": (TS, True, None),
        "heartbeat_deadline_at": (TS, True, None),
    },
    "delegation_edges": {
        "id": ("text", False, None),
        "zone_id": ("text", False, None),
        "source_session_id": ("text", False, None),
        "target_session_id": ("text", False, None),
        "issuer_application_id": ("text", False, None),
        "receiver_application_id": ("text", False, None),
        "resource_id": ("text", True, None),
        "scopes": ("ARRAY", False, "'{}'::text[]"),
        "constraints_json": ("jsonb", False, "'{}'::jsonb"),
        "status": ("text", False, "'active'::text"),
        "expires_at": (TS, False, None),
        "edge_version": ("integer", False, "0"),
        "revoked_at": (TS, True, None),
        "created_at": (TS, False, "now()"),
        "updated_at": (TS, False, "now()"),
        "parent_edge_id": ("text", True, None),
    },
}
# (kind, columns, referenced table, referenced columns, on delete) of every key
KEYS: dict[str, set[tuple[str, tuple[str, ...], str | None, tuple[str, ...], str]]] = {
    "agent_sessions": {
        ("p", ("id",), None, (), "a"),
        ("u", ("zone_id", "id"), None, (), "a"),
        ("f", ("zone_id", "application_id"), "applications", ("zone_id", "id"), "a"),
        ("f", ("zone_id", "parent_id"), "agent_sessions", ("zone_id", "id"), "a"),
        ("f", ("zone_id", "subject_session_id"), "sessions", ("zone_id", "id"), "a"),
    },
    "delegation_edges": {
        ("p", ("id",), None, (), "a"),
        ("f", ("zone_id", "source_session_id"), "agent_sessions", ("zone_id", "id"), "c"),
        ("f", ("zone_id", "target_session_id"), "agent_sessions", ("zone_id", "id"), "c"),
        ("f", ("zone_id", "issuer_application_id"), "applications", ("zone_id", "id"), "a"),
        ("f", ("zone_id", "receiver_application_id"), "applications", ("zone_id", "id"), "a"),
        ("f", ("zone_id", "resource_id"), "resources", ("zone_id", "id"), "a"),
        ("f", ("parent_edge_id",), "delegation_edges", ("id",), "n"),
    },
}
# column -> allowed values of each value check; `None` names the source <> target check
CHECKS: dict[str, dict[str | None, set[str]]] = {
    "agent_sessions": {
        "status": {"active", "suspended", "terminated", "expired"},
        "agent_kind": {"service", "instance", "ephemeral"},
    },
    "delegation_edges": {"status": {"active", "revoked", "expired"}, None: set()},
}
# (columns, predicate) of each non-key index the contract lists
INDEXES = {
    "agent_sessions": {
        (("zone_id", "parent_id", "status"), None),
        (("last_active_at",), "status = 'active'"),
        (("subject_session_id",), None),
        (("heartbeat_deadline_at",), "status = 'active' AND agent_kind = 'service'"),
    },
    "delegation_edges": {
        (("zone_id", "source_session_id", "status"), None),
        (("zone_id", "target_session_id", "status"), None),
        (("zone_id", "resource_id", "status"), "resource_id IS NOT NULL"),
        (("expires_at",), "status = 'active'"),
        (("zone_id", "parent_edge_id"), "parent_edge_id IS NOT NULL"),
    },
}
# what we add (DESIGN.md: indexes freely), kept apart so the contract's list stays exact
OUR_INDEXES = {
    "agent_sessions": {(("zone_id", "application_id"), "status = ANY (ARRAY['active', 'suspended'])")},
    "delegation_edges": set(),
}
TABLES = sorted(COLUMNS)

_KEYS = """
SELECT k.contype::text AS contype, pg_get_constraintdef(k.oid) AS definition, k.confdeltype::text AS ondelete,
       ARRAY(SELECT a.attname::text FROM unnest(k.conkey) WITH ORDINALITY AS c(n, i)
             JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = c.n ORDER BY c.i) AS columns,
       f.relname AS referenced,
       ARRAY(SELECT a.attname::text FROM unnest(k.confkey) WITH ORDINALITY AS c(n, i)
             JOIN pg_attribute a ON a.attrelid = k.confrelid AND a.attnum = c.n ORDER BY c.i) AS ref_columns
  FROM pg_constraint k LEFT JOIN pg_class f ON f.oid = k.confrelid
 WHERE k.conrelid = CAST(:table AS regclass) AND k.contype <> 'n'
"""
_INDEXES = """
SELECT ARRAY(SELECT a.attname::text FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS c(n, o)
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = c.n ORDER BY c.o) AS columns,
       pg_get_expr(i.indpred, i.indrelid) AS predicate
  FROM pg_index i
 WHERE i.indrelid = CAST(:table AS regclass)
   AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)
"""


async def _rows(engine: AsyncEngine, query: str, table: str) -> list[Any]:
    async with engine.connect() as conn:
        return list((await conn.execute(text(query), {"table": f"public.{table}"})).all())


@pytest.mark.parametrize("table", TABLES)
async def test_agent_tables_columns_match_the_contract(engine: AsyncEngine, table: str) -> None:
    """Every column with its type, nullability and default, and no other column."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT column_name, data_type, is_nullable, column_default FROM information_schema.columns"
                " WHERE table_schema = 'public' AND table_name = :table"
            ),
            {"table": table},
        )
        found = {r.column_name: (r.data_type, r.is_nullable == "YES", r.column_default) for r in rows}
    assert found == COLUMNS[table]


@pytest.mark.parametrize("table", TABLES)
async def test_agent_tables_keys_match_the_contract(engine: AsyncEngine, table: str) -> None:
    """Primary, unique and foreign keys with their referenced columns and ON DELETE actions; no others."""
    rows = [r for r in await _rows(engine, _KEYS, table) if r.contype != "c"]
    found = [
        (r.contype, tuple(r.columns), r.referenced, tuple(r.ref_columns or ()), r.ondelete.strip() or "a")
        for r in rows
    ]
    assert set(found) == KEYS[table] and len(found) == len(KEYS[table])


@pytest.mark.parametrize("table", TABLES)
async def test_agent_tables_checks_match_the_contract(engine: AsyncEngine, table: str) -> None:
    """The value checks (allowed values) and delegation_edges' source ≠ target; no other check."""
    checks: dict[str | None, set[str]] = {}
    for row in (r for r in await _rows(engine, _KEYS, table) if r.contype == "c"):
        if row.definition == "CHECK ((source_session_id <> target_session_id))":
            checks[None] = set()
            continue
        (column,) = row.columns
        checks[column] = set(re.findall(r"'([^']*)'::text", row.definition))
    assert checks == CHECKS[table]


@pytest.mark.parametrize("table", TABLES)
async def test_agent_tables_indexes_are_the_contracts_plus_ours(engine: AsyncEngine, table: str) -> None:
    """The contract's indexes, and besides keys only the ones we add."""
    rows = await _rows(engine, _INDEXES, table)
    found = {(tuple(r.columns), _predicate(r.predicate)) for r in rows}
    assert found == INDEXES[table] | OUR_INDEXES[table] and len(rows) == len(found)


def _predicate(expression: str | None) -> str | None:
    """Postgres' rendering `((status = 'active'::text) AND …)` written as the contract does."""
    if expression is None:
        return None
    plain = expression.replace("::text", "")
    while plain.startswith("(") and plain.endswith(")") and _balanced(plain[1:-1]):
        plain = plain[1:-1]
    return re.sub(r"\((\w+ = '\w+')\)", r"\1", plain)


def _balanced(expression: str) -> bool:
    depth = 0
    for char in expression:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0:
            return False
    return depth == 0
