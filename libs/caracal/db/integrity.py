"""The one registry of what a violated constraint or refused value means to a client.

Keyed by the constraint names of `caracal.db.tables`, and derived from them so a new table needs no
entry: a primary key, unique constraint or unique index means 409 `<entity>_conflict`; a foreign key
means 404 `<parent>_not_found` when the row written names a missing parent, 409 `<parent>_in_use`
when the parent row changed is still referenced; a check means 400 with the table's invalid code.
The contract's own codes override the derived ones (`zones_slug_key` is 409 `zone_slug_conflict`).
Data exceptions (SQLSTATE class 22: NUL or bad encoding in text, numbers out of range, text that is
not a valid value of its type) are 400 too: nothing a client sends may become a 500.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from sqlalchemy import CheckConstraint, ForeignKeyConstraint, MetaData, PrimaryKeyConstraint, Table
from sqlalchemy import UniqueConstraint as SqlUnique

from caracal.db.tables import entity_of, invalid_code_of, metadata
from caracal.db.tables.providers import PROVIDERS_ZONE_IDENTIFIER_ACTIVE_UIDX
from caracal.db.tables.resources import RESOURCES_ZONE_ID_IDENTIFIER_KEY
from caracal.db.tables.zones import ZONES_SLUG_KEY
from caracal.errors import CaracalError, Conflict, InvalidInput, NotFound

UNIQUE_VIOLATION = "23505"
FOREIGN_KEY_VIOLATION = "23503"
CHECK_VIOLATION = "23514"
NOT_NULL_VIOLATION = "23502"
DATA_EXCEPTION_CLASS = "22"
INTEGRITY_CLASS = "23"
INVALID_INPUT = "invalid_input"


@dataclass(frozen=True)
class Refusal:
    """The error a client gets for one violated constraint."""

    kind: type[CaracalError]
    code: str
    detail: str

    def error(self) -> CaracalError:
        return self.kind(self.code, self.detail)


@dataclass(frozen=True)
class Violation:
    """What the database says went wrong: the SQLSTATE and, for integrity errors, where."""

    sqlstate: str
    constraint: str | None = None
    table: str | None = None
    key_columns: tuple[str, ...] | None = None  # of a foreign key violation, from its detail


# The contract's codes where it names one (CONTRACT.md §4); everything else is derived.
CONTRACT_CODES: Mapping[str, Refusal] = {
    ZONES_SLUG_KEY: Refusal(Conflict, "zone_slug_conflict", "the slug is taken by another zone"),
    PROVIDERS_ZONE_IDENTIFIER_ACTIVE_UIDX: Refusal(
        Conflict, "provider_identifier_conflict", "the identifier is taken by a live provider of the zone"
    ),
    RESOURCES_ZONE_ID_IDENTIFIER_KEY: Refusal(
        Conflict, "resource_identifier_conflict", "the identifier is taken by another resource of the zone"
    ),
}

# Safe words for data exceptions: the database's own message may quote the value sent.
_DATA_DETAILS = {
    "22001": "a value is longer than its field allows",
    "22003": "a number is out of range",
    "22021": "text must be valid UTF-8 without NUL characters",
    "22P02": "a value is not valid for its type",
    "22P05": "a value holds a character the database cannot store (such as \\u0000)",
}


def _words(entity: str) -> str:
    return entity.replace("_", " ")


def _conflict(table: Table) -> Refusal:
    entity = entity_of(table)
    return Refusal(Conflict, f"{entity}_conflict", f"the {_words(entity)} exists already")


def _refusal(table: Table, constraint: object) -> Refusal | None:
    entity = entity_of(table)
    if isinstance(constraint, (PrimaryKeyConstraint, SqlUnique)):
        return _conflict(table)
    if isinstance(constraint, ForeignKeyConstraint):
        parent = entity_of(constraint.referred_table)
        return Refusal(NotFound, f"{parent}_not_found", f"the {_words(parent)} does not exist")
    if isinstance(constraint, CheckConstraint):
        return Refusal(InvalidInput, invalid_code_of(table), f"the {_words(entity)} breaks a field rule")
    return None


def _named(tables: MetaData) -> Iterator[tuple[str, Refusal]]:
    for table in tables.sorted_tables:
        for constraint in table.constraints:
            refusal = _refusal(table, constraint)
            if refusal is not None and isinstance(constraint.name, str):
                yield constraint.name, refusal
        for index in table.indexes:
            if index.unique and isinstance(index.name, str):
                yield index.name, _conflict(table)


def constraint_registry(tables: MetaData) -> dict[str, Refusal]:
    """Constraint name -> refusal, for violations raised on the constrained table's own rows."""
    return {**dict(_named(tables)), **CONTRACT_CODES}


@dataclass(frozen=True)
class InUse:
    """A foreign key seen from its parent: which key columns Postgres names when the parent row changed."""

    parent_columns: tuple[str, ...]
    child_columns: tuple[str, ...]
    refusal: Refusal

    def matches(self, key_columns: tuple[str, ...] | None) -> bool:
        # Postgres reports the child's table either way; only the key its detail names tells the
        # directions apart (the parent's key when a referenced row changed, the child's otherwise)
        return key_columns == self.parent_columns and key_columns != self.child_columns


def parents_in_use(tables: MetaData) -> dict[str, InUse]:
    """Foreign key name -> its meaning when the parent row changed while still referenced."""
    found = {}
    for table in tables.sorted_tables:
        for fk in table.foreign_key_constraints:
            if isinstance(fk.name, str):
                entity = entity_of(fk.referred_table)
                found[fk.name] = InUse(
                    parent_columns=tuple(element.column.name for element in fk.elements),
                    child_columns=tuple(fk.column_keys),
                    refusal=Refusal(
                        Conflict, f"{entity}_in_use", f"the {_words(entity)} is still referenced"
                    ),
                )
    return found


REGISTRY = constraint_registry(metadata)
IN_USE = parents_in_use(metadata)
_INVALID_BY_TABLE = {table.name: invalid_code_of(table) for table in metadata.sorted_tables}
_CONFLICT_BY_TABLE = {table.name: _conflict(table) for table in metadata.sorted_tables}


def refusal_for(violation: Violation) -> CaracalError | None:
    """The client's error for an integrity or data error; None for every other failure."""
    state = violation.sqlstate
    if state.startswith(DATA_EXCEPTION_CLASS):
        return InvalidInput(INVALID_INPUT, _DATA_DETAILS.get(state, "a value is not acceptable"))
    if not state.startswith(INTEGRITY_CLASS):
        return None
    in_use = IN_USE.get(violation.constraint or "")
    if state == FOREIGN_KEY_VIOLATION and in_use is not None and in_use.matches(violation.key_columns):
        return in_use.refusal.error()
    known = REGISTRY.get(violation.constraint or "")
    if known is not None:
        return known.error()
    return _unregistered(violation)


def _unregistered(violation: Violation) -> CaracalError:
    """A constraint no table module names (the schema test keeps this rare): judged by SQLSTATE."""
    if violation.sqlstate in (CHECK_VIOLATION, NOT_NULL_VIOLATION):
        code = _INVALID_BY_TABLE.get(violation.table or "", INVALID_INPUT)
        return InvalidInput(code, "a required field is missing or breaks a rule")
    conflict = _CONFLICT_BY_TABLE.get(violation.table or "")
    if violation.sqlstate == UNIQUE_VIOLATION and conflict is not None:
        return conflict.error()
    return Conflict("conflict", "the change conflicts with the current state")
