"""The migrated `sessions` table is the one the STS expects (CONTRACT.md §9), read from the catalog
and compared with literals written from the contract, not with our own table definitions."""

from __future__ import annotations

import re

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

# column -> (type, nullable, default), as CONTRACT.md §9 lists them
COLUMNS = {
    "id": ("text", False, None),
    "zone_id": ("text", False, None),
    "session_type": ("text", False, None),
    "subject_id": ("text", True, None),
    "parent_id": ("text", True, None),
    "status": ("text", False, "'active'::text"),
    "expires_at": ("timestamp with time zone", False, None),
    "authenticated_at": ("timestamp with time zone", False, None),
    "claims_json": ("jsonb", True, None),
    "created_at": ("timestamp with time zone", False, "now()"),
}
PRIMARY_KEY = ("id",)
UNIQUE_KEYS = {("zone_id", "id")}
FOREIGN_KEYS = {(("zone_id",), "zones", ("id",)), (("parent_id",), "sessions", ("id",))}
CHECKS = {"session_type": {"user", "application"}, "status": {"active", "revoked", "expired"}}
# (columns, predicate) of each non-key index
INDEXES = {(("zone_id", "subject_id", "status"), None), (("expires_at",), "status = 'active'")}
# what we add (migration 0005: the list's pages, the descendant walk), kept apart from the contract's
OUR_INDEXES = {
    (("zone_id", "created_at", "id"), None),
    (("zone_id", "subject_id", "created_at", "id"), None),
    (("parent_id",), "parent_id IS NOT NULL"),
}

_KEY_COLUMNS = """
SELECT k.contype::text AS contype, k.conname, pg_get_constraintdef(k.oid) AS definition,
       ARRAY(SELECT a.attname::text FROM unnest(k.conkey) WITH ORDINALITY AS c(n, i)
             JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = c.n ORDER BY c.i) AS columns,
       f.relname AS referenced,
       ARRAY(SELECT a.attname::text FROM unnest(k.confkey) WITH ORDINALITY AS c(n, i)
             JOIN pg_attribute a ON a.attrelid = k.confrelid AND a.attnum = c.n ORDER BY c.i) AS ref_columns
  FROM pg_constraint k LEFT JOIN pg_class f ON f.oid = k.confrelid
 WHERE k.conrelid = 'public.sessions'::regclass
"""
_INDEXES = """
SELECT ARRAY(SELECT a.attname::text FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS c(n, o)
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = c.n ORDER BY c.o) AS columns,
       pg_get_expr(i.indpred, i.indrelid) AS predicate
  FROM pg_index i
 WHERE i.indrelid = 'public.sessions'::regclass
   AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)
"""


async def test_sessions_columns_match_the_contract(engine: AsyncEngine) -> None:
    """Every column with its type, nullability and default, and no other column."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT column_name, data_type, is_nullable, column_default FROM information_schema.columns"
                " WHERE table_schema = 'public' AND table_name = 'sessions'"
            )
        )
        found = {r.column_name: (r.data_type, r.is_nullable == "YES", r.column_default) for r in rows}
    assert found == COLUMNS


async def test_sessions_keys_and_checks_match_the_contract(engine: AsyncEngine) -> None:
    """Primary key id, unique (zone_id, id), the two foreign keys, and the two value checks."""
    async with engine.connect() as conn:
        constraints = (await conn.execute(text(_KEY_COLUMNS))).all()
    by_type: dict[str, list[tuple[str, ...]]] = {}
    for row in constraints:
        by_type.setdefault(row.contype, []).append(tuple(row.columns))
    assert by_type["p"] == [PRIMARY_KEY]
    assert set(by_type["u"]) == UNIQUE_KEYS and len(by_type["u"]) == len(UNIQUE_KEYS)
    foreign = {
        (tuple(r.columns), r.referenced, tuple(r.ref_columns)) for r in constraints if r.contype == "f"
    }
    assert foreign == FOREIGN_KEYS and len(by_type["f"]) == len(FOREIGN_KEYS)
    checks = {}
    for row in (r for r in constraints if r.contype == "c"):
        (column,) = row.columns
        checks[column] = set(re.findall(r"'([^']*)'::text", row.definition))
    assert checks == CHECKS and len(by_type["c"]) == len(CHECKS)
    # Postgres 18 also lists NOT NULL as constraints ('n'); the columns test checks those
    assert set(by_type) - {"n"} == {"p", "u", "f", "c"}


async def test_sessions_indexes_match_the_contract(engine: AsyncEngine) -> None:
    """(zone_id, subject_id, status), and (expires_at) of active sessions; besides keys only ours."""
    async with engine.connect() as conn:
        rows = (await conn.execute(text(_INDEXES))).all()
    found = {(tuple(r.columns), _predicate(r.predicate)) for r in rows}
    assert found == INDEXES | OUR_INDEXES and len(rows) == len(found)


def _predicate(expression: str | None) -> str | None:
    """Postgres' rendering `(status = 'active'::text)` written as the contract does."""
    if expression is None:
        return None
    return expression.replace("::text", "").strip("()")
