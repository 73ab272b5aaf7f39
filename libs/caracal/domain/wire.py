"""The wire vocabulary every aggregate shares: strict request bodies, NUL-free text, response timestamps."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import msgspec

NO_NUL = r"^[^\x00]*$"  # Postgres text cannot hold NUL: refuse it as input, not as a 500

# The one text type of the API: request bodies and query parameters alike.
Text = Annotated[str, msgspec.Meta(pattern=NO_NUL)]
Name = Annotated[str, msgspec.Meta(min_length=1, pattern=NO_NUL)]
# Milliseconds and a Z, as the contract writes every timestamp (caracal.timefmt.iso_ms).
Timestamp = str
# ISO-8601 in UTC with a Z, as the contract's bodies and queries write datetimes (CONTRACT.md §7.2)
UtcTimestamp = Annotated[str, msgspec.Meta(pattern=r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")]


def utc_datetime(value: str) -> dt.datetime:
    """A `UtcTimestamp`; fractions beyond microseconds are cut (Python keeps six digits). An impossible
    date (02-30) raises ValueError."""
    head, dot, fraction = value[:-1].partition(".")
    return dt.datetime.fromisoformat(f"{head}.{fraction[:6]}" if dot else head).replace(tzinfo=dt.UTC)


class Body(msgspec.Struct, forbid_unknown_fields=True):
    """A request body: a field the contract does not name is refused (400), not ignored."""


class Resource(msgspec.Struct):
    """A response body: encoded straight to JSON bytes, keys as the fields are named."""


class LenientBody(msgspec.Struct):
    """A request body of a lenient route (CONTRACT.md §4.14): keys it does not name are dropped."""


# A grant or provider-grant scope (CONTRACT.md §7.2), and the 1..64 of them a grant holds.
Scope = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=r"^[a-z0-9:_./-]+$")]
Scopes = Annotated[list[Scope], msgspec.Meta(min_length=1, max_length=64)]
