"""A database's tables as its catalog describes them (pg_catalog alone), and how two readings differ.

Independent of the table definitions on purpose: tests compare what the migrations built with what
`caracal.db.tables` declares, each read back from a real database the same way.
"""

from __future__ import annotations

from typing import Any

import asyncpg

IGNORED_TABLES = ("alembic_version",)

_TABLES = """
SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
   AND c.relname <> ALL($1::text[])
"""
_COLUMNS = """
SELECT c.relname AS table_name, a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type,
       a.attnotnull AS not_null, pg_get_expr(d.adbin, d.adrelid) AS default_expr,
       a.attidentity::text AS identity, a.attgenerated::text AS generated
  FROM pg_attribute a
  JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
"""
_CONSTRAINTS = """
SELECT c.relname AS table_name, con.conname AS name, con.contype::text AS kind,
       ARRAY(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY AS k(attnum, ord)
               JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum
              ORDER BY k.ord) AS columns,
       pg_get_constraintdef(con.oid, true) AS definition
  FROM pg_constraint con
  JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'public'
"""
_INDEXES = """
SELECT c.relname AS table_name, i.relname AS name, x.indisunique AS is_unique,
       ARRAY(SELECT pg_get_indexdef(x.indexrelid, k, true)
                    || CASE WHEN x.indoption[k - 1] & 1 = 1 THEN ' DESC' ELSE '' END
               FROM generate_series(1, x.indnkeyatts) AS k ORDER BY k) AS columns,
       pg_get_expr(x.indpred, x.indrelid, true) AS predicate,
       pg_get_indexdef(x.indexrelid) AS definition
  FROM pg_index x
  JOIN pg_class i ON i.oid = x.indexrelid
  JOIN pg_class c ON c.oid = x.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'public'
"""

_TRIGGERS = """
SELECT c.relname AS table_name, t.tgname AS name, pg_get_triggerdef(t.oid, true) AS definition,
       t.tgenabled::text AS enabled
  FROM pg_trigger t
  JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'public' AND NOT t.tgisinternal
"""
# Functions belong to no table: they are filed under FUNCTIONS. Extensions' functions are not ours.
# The body is compared with its whitespace collapsed (a migration indents it, a definition may not).
_FUNCTIONS = """
SELECT p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')' AS name,
       pg_get_function_result(p.oid) AS result, l.lanname AS language, p.provolatile::text AS volatility,
       p.prosecdef AS security_definer,
       btrim(regexp_replace(p.prosrc, '\\s+', ' ', 'g')) AS body
  FROM pg_proc p
  JOIN pg_namespace n ON n.oid = p.pronamespace JOIN pg_language l ON l.oid = p.prolang
 WHERE n.nspname = 'public'
   AND NOT EXISTS (SELECT 1 FROM pg_depend d
                    WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')
"""
FUNCTIONS = "(functions)"

Shape = dict[str, dict[str, dict[str, Any]]]  # table -> section:name -> property -> value


async def describe(url: str) -> Shape:
    """Per public table: its columns, constraints, indexes and triggers; the functions under FUNCTIONS."""
    conn = await asyncpg.connect(url)
    try:
        tables = await conn.fetch(_TABLES, list(IGNORED_TABLES))
        shape: Shape = {row["relname"]: {} for row in tables}
        sections = (
            ("column", _COLUMNS),
            ("constraint", _CONSTRAINTS),
            ("index", _INDEXES),
            ("trigger", _TRIGGERS),
        )
        for section, query in sections:
            for row in await conn.fetch(query):
                found = dict(row)
                table = found.pop("table_name")
                if table in shape:
                    shape[table][f"{section} {found.pop('name')}"] = found
        functions = {f"function {row['name']}": dict(row) for row in await conn.fetch(_FUNCTIONS)}
        if functions:
            shape[FUNCTIONS] = functions
    finally:
        await conn.close()
    return shape


def differences(expected: Shape, actual: Shape, *, expected_as: str, actual_as: str) -> list[str]:
    """One line per table, column, constraint or index that exists or looks different on one side."""
    lines = [f"table {t}: only in {expected_as}" for t in sorted(expected.keys() - actual.keys())]
    lines += [f"table {t}: only in {actual_as}" for t in sorted(actual.keys() - expected.keys())]
    for table in sorted(expected.keys() & actual.keys()):
        ours, theirs = expected[table], actual[table]
        lines += [f"{table} {item}: only in {expected_as}" for item in sorted(ours.keys() - theirs.keys())]
        lines += [f"{table} {item}: only in {actual_as}" for item in sorted(theirs.keys() - ours.keys())]
        for item in sorted(ours.keys() & theirs.keys()):
            for prop in sorted(ours[item].keys() | theirs[item].keys()):
                if ours[item].get(prop) != theirs[item].get(prop):
                    lines.append(
                        f"{table} {item} {prop}: {expected_as} {ours[item].get(prop)!r}"
                        f" != {actual_as} {theirs[item].get(prop)!r}"
                    )
    return lines
