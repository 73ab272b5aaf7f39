"""The wire vocabulary every aggregate shares: strict request bodies, NUL-free text, response timestamps."""

from __future__ import annotations

from typing import Annotated

import msgspec

NO_NUL = r"^[^\x00]*$"  # Postgres text cannot hold NUL: refuse it as input, not as a 500

# The one text type of the API: request bodies and query parameters alike.
Text = Annotated[str, msgspec.Meta(pattern=NO_NUL)]
Name = Annotated[str, msgspec.Meta(min_length=1, pattern=NO_NUL)]
# Milliseconds and a Z, as the contract writes every timestamp (caracal.timefmt.iso_ms).
Timestamp = str


class Body(msgspec.Struct, forbid_unknown_fields=True):
    """A request body: a field the contract does not name is refused (400), not ignored."""


class Resource(msgspec.Struct):
    """A response body: encoded straight to JSON bytes, keys as the fields are named."""
