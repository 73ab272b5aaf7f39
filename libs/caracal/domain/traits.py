"""Application traits: the contract's four rules (CONTRACT.md §4.2), each a 403 with its code."""

from __future__ import annotations

import re

from caracal.domain.context import Caller
from caracal.errors import Forbidden

MAX_TRAITS = 32
MAX_TRAIT_LENGTH = 128
CONTROL_NAMESPACE = "control"
_TRAIT = re.compile(r"[A-Za-z][A-Za-z0-9._:-]*")


def trait_error(traits: list[str], caller: Caller) -> Forbidden | None:
    """The first rule `traits` break, in the contract's order; None when they keep them all."""
    if len(traits) > MAX_TRAITS:
        return Forbidden("trait_count_exceeded", f"at most {MAX_TRAITS} traits")
    for trait in traits:
        if not 1 <= len(trait) <= MAX_TRAIT_LENGTH or _TRAIT.fullmatch(trait) is None:
            detail = f"trait {trait!r} must be 1..{MAX_TRAIT_LENGTH} characters matching ^{_TRAIT.pattern}$"
            return Forbidden("trait_invalid", detail)
    seen: set[str] = set()
    for trait in traits:
        if trait in seen:
            return Forbidden("trait_duplicate", f"trait {trait!r} is given twice")
        seen.add(trait)
    global_caller = caller.actor is not None and caller.actor.is_global
    for trait in traits:
        # a bare `control` is its own namespace, as the original splits on ':' and takes the first part
        if trait.partition(":")[0] == CONTROL_NAMESPACE and not global_caller:
            detail = f"trait {trait!r} is in the control namespace: global tokens only"
            return Forbidden("trait_forbidden", detail)
    return None
