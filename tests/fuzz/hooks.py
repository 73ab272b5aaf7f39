"""Schemathesis hooks for the conformance and fuzz runs (loaded through SCHEMATHESIS_HOOKS).

`use_after_free` expects every path below a deleted object to answer 404. The contract archives a zone
without cascading (CONTRACT.md, "Soft delete" and "Zone existence"): its applications, resources,
policies... stay readable and its lists answer 200, as the original's clients rely on. So the check
runs as schemathesis defines it, except for the paths below an archived zone (the zone's own is 404).
"""

from __future__ import annotations

from typing import Any

import schemathesis
from schemathesis.openapi.checks import UseAfterFree
from schemathesis.specs.openapi.checks import use_after_free

ZONE_PATH = "/v1/zones/{zone_id}"


@schemathesis.check
def use_after_free_but_zone_children(ctx: Any, response: Any, case: Any) -> bool | None:
    """use_after_free, except for reads below an archived zone (the contract keeps them answering)."""
    try:
        return use_after_free(ctx, response, case)
    except UseAfterFree as failure:
        # the zone itself must be gone; only what lies below it stays
        if failure.operation == f"DELETE {ZONE_PATH}" and case.operation.path != ZONE_PATH:
            return None
        raise
