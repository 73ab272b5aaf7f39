"""The constraint-to-error registry: every named key, check and index of the tables means a 4xx."""

from __future__ import annotations

import pytest
from sqlalchemy import CheckConstraint, Column, ForeignKeyConstraint, MetaData, Table, Text, UniqueConstraint

from caracal.db.integrity import REGISTRY, Violation, constraint_registry, parents_in_use, refusal_for
from caracal.db.tables import aggregate, metadata
from caracal.db.tables.admin_tokens import (
    ADMIN_TOKENS_ACTIVE_SHA256_UIDX,
    ADMIN_TOKENS_PKEY,
    ADMIN_TOKENS_SCOPE_CHECK,
    ADMIN_TOKENS_ZONE_ID_FKEY,
)
from caracal.db.tables.zones import ZONES_NAME_CHECK, ZONES_PKEY, ZONES_SLUG_KEY
from caracal.errors import CaracalError


def refused(
    sqlstate: str, constraint: str | None = None, table: str | None = None, key: tuple[str, ...] | None = None
) -> tuple[int, str]:
    error = refusal_for(Violation(sqlstate, constraint=constraint, table=table, key_columns=key))
    assert isinstance(error, CaracalError)
    return error.status, error.code


def test_every_named_constraint_and_unique_index_of_the_tables_is_registered() -> None:
    """A table module's keys, checks and unique indexes all have a meaning, with no entry written by hand."""
    names = {
        c.name
        for table in metadata.sorted_tables
        for c in (*table.constraints, *(i for i in table.indexes if i.unique))
    }
    assert names - REGISTRY.keys() == set()


@pytest.mark.parametrize(
    ("constraint", "table", "expected"),
    [
        (ZONES_SLUG_KEY, "zones", (409, "zone_slug_conflict")),
        (ZONES_PKEY, "zones", (409, "zone_conflict")),
        (ADMIN_TOKENS_PKEY, "admin_tokens", (409, "admin_token_conflict")),
        (ADMIN_TOKENS_ACTIVE_SHA256_UIDX, "admin_tokens", (409, "admin_token_conflict")),
    ],
)
def test_unique_violations_are_409_entity_conflict_or_the_contracts_code(
    constraint: str, table: str, expected: tuple[int, str]
) -> None:
    assert refused("23505", constraint, table) == expected


def test_a_token_naming_a_missing_zone_is_404_zone_not_found() -> None:
    """Postgres names the child's key ("Key (zone_id)=… is not present") when the child row is written."""
    assert refused("23503", ADMIN_TOKENS_ZONE_ID_FKEY, "admin_tokens", ("zone_id",)) == (
        404,
        "zone_not_found",
    )
    assert refused("23503", ADMIN_TOKENS_ZONE_ID_FKEY, "admin_tokens") == (404, "zone_not_found")


def test_changing_a_zone_its_tokens_still_reference_is_409_zone_in_use() -> None:
    """Postgres names the parent's key ("Key (id)=… is still referenced") when the parent row changed."""
    assert refused("23503", ADMIN_TOKENS_ZONE_ID_FKEY, "admin_tokens", ("id",)) == (409, "zone_in_use")


@pytest.mark.parametrize(
    ("constraint", "table", "expected"),
    [
        (ZONES_NAME_CHECK, "zones", (400, "invalid_zone")),
        (ADMIN_TOKENS_SCOPE_CHECK, "admin_tokens", (400, "invalid_admin_token_request")),
    ],
)
def test_check_violations_are_400_with_the_tables_invalid_code(
    constraint: str, table: str, expected: tuple[int, str]
) -> None:
    assert refused("23514", constraint, table) == expected


@pytest.mark.parametrize("sqlstate", ["22021", "22P05", "22003", "22P02", "22001", "22000", "22012"])
def test_data_exceptions_are_400_invalid_input(sqlstate: str) -> None:
    """NUL, bad encoding, out of range, invalid text: the client's value, so never a 500."""
    assert refused(sqlstate) == (400, "invalid_input")


def test_data_exception_details_never_quote_the_database_message() -> None:
    error = refusal_for(Violation("22021"))
    assert error is not None and error.detail == "text must be valid UTF-8 without NUL characters"


def test_constraints_no_table_module_names_are_judged_by_sqlstate() -> None:
    assert refused("23505", "nobody_knows_key", "zones") == (409, "zone_conflict")
    assert refused("23505", "nobody_knows_key", "elsewhere") == (409, "conflict")
    assert refused("23503", "nobody_knows_fkey", "zones") == (409, "conflict")
    assert refused("23514", "nobody_knows_check", "zones") == (400, "invalid_zone")
    assert refused("23502", None, "admin_tokens") == (400, "invalid_admin_token_request")
    assert refused("23514", "nobody_knows_check", "elsewhere") == (400, "invalid_input")


@pytest.mark.parametrize("sqlstate", ["40001", "57014", "42P01", "08006", "XX000"])
def test_failures_that_are_not_the_clients_are_left_alone(sqlstate: str) -> None:
    assert refusal_for(Violation(sqlstate)) is None


def test_a_new_tables_constraints_get_meanings_from_its_entity_name() -> None:
    """What the next aggregate gets for free: derived codes from `aggregate(...)` and its parents."""
    tables = MetaData()
    Table("parents", tables, Column("id", Text, primary_key=True), info=aggregate("parent"))
    Table(
        "children",
        tables,
        Column("id", Text, primary_key=True),
        Column("parent_id", Text),
        Column("label", Text),
        ForeignKeyConstraint(["parent_id"], ["parents.id"], name="children_parent_id_fkey"),
        UniqueConstraint("parent_id", "label", name="children_parent_id_label_key"),
        CheckConstraint("label <> ''", name="children_label_check"),
        info=aggregate("child"),
    )
    registry = constraint_registry(tables)
    assert {name: r.code for name, r in registry.items() if name.startswith("children")} == {
        "children_parent_id_fkey": "parent_not_found",
        "children_parent_id_label_key": "child_conflict",
        "children_label_check": "invalid_child",
    }
    in_use = parents_in_use(tables)["children_parent_id_fkey"]
    assert (in_use.parent_columns, in_use.child_columns, in_use.refusal.code) == (
        ("id",),
        ("parent_id",),
        "parent_in_use",
    )
