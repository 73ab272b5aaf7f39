"""The one definition of every table: one module per aggregate, all sharing this MetaData.

Alembic's migrations build the schema; these definitions carry the same columns, keys, checks and
indexes under the names the migrations give them (the domain refers to constraints by these names),
and tests/integration/test_tables_match_database.py proves the two agree.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import DateTime, MetaData, Table
from sqlalchemy.types import UserDefinedType

metadata = MetaData()

TS = DateTime(timezone=True)


class Xid8(UserDefinedType[int]):
    """Postgres' 64-bit transaction id (`xid8`), which SQLAlchemy does not name."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        del kw
        return "XID8"


def aggregate(entity: str, *, invalid: str | None = None) -> dict[str, str]:
    """A table's `info`: the entity its errors name, and the 400 code of its check violations."""
    return {"entity": entity, "invalid": invalid or f"invalid_{entity}"}


def entity_of(table: Table) -> str:
    return str(table.info["entity"])


def invalid_code_of(table: Table) -> str:
    return str(table.info["invalid"])


# Every aggregate's module registers its tables on `metadata` when imported; importing the
# package therefore gives the whole schema (the registry and the schema test need all of it).
from caracal.db.tables import (  # noqa: E402
    admin_tokens,
    agents,
    applications,
    audit,
    decision_audit,
    grants,
    idempotency,
    invitations,
    outbox,
    policies,
    providers,
    resources,
    sessions,
    step_up,
    teams,
    zones,
)

__all__ = [
    "TS",
    "Xid8",
    "admin_tokens",
    "agents",
    "aggregate",
    "applications",
    "audit",
    "decision_audit",
    "entity_of",
    "grants",
    "idempotency",
    "invalid_code_of",
    "invitations",
    "metadata",
    "outbox",
    "policies",
    "providers",
    "resources",
    "sessions",
    "step_up",
    "teams",
    "zones",
]
