"""The trait rules of CONTRACT.md §4.2, each with its 403 code, in the contract's order."""

from __future__ import annotations

import pytest

from caracal.domain.context import Actor, Caller
from caracal.domain.traits import trait_error

GLOBAL = Caller(Actor("t1", "ops", "global", None, "write"))
ZONE = Caller(Actor("t2", "zone", "zone", "z1", "write"))


def code(traits: list[str], caller: Caller = ZONE) -> str | None:
    error = trait_error(traits, caller)
    if error is None:
        return None
    assert error.status == 403 and error.detail
    return error.code


def test_thirty_two_traits_pass_and_thirty_three_are_too_many() -> None:
    """More than 32 is trait_count_exceeded, whatever the traits are."""
    assert code([f"t{n}" for n in range(32)]) is None
    assert code([f"t{n}" for n in range(33)]) == "trait_count_exceeded"
    assert code(["1bad"] * 33) == "trait_count_exceeded"


@pytest.mark.parametrize("trait", ["", "1a", "-a", "a b", "a/b", "é", "a" * 129, "a\x00"])
def test_a_trait_outside_the_pattern_or_length_is_invalid(trait: str) -> None:
    """1..128 characters matching ^[A-Za-z][A-Za-z0-9._:-]*$, else trait_invalid."""
    assert code(["ok", trait]) == "trait_invalid"


@pytest.mark.parametrize("trait", ["a", "A9", "team:payments", "x.y_z-1:2", "a" * 128])
def test_a_trait_within_the_pattern_passes(trait: str) -> None:
    assert code([trait]) is None


def test_a_repeated_trait_is_a_duplicate_and_case_matters() -> None:
    assert code(["a", "b", "a"]) == "trait_duplicate"
    assert code(["a", "A"]) is None


@pytest.mark.parametrize("trait", ["control:admin", "control", "control:"])
def test_control_namespace_is_for_global_tokens_only(trait: str) -> None:
    """The namespace is the text before the first ':' (a bare `control` included)."""
    assert code([trait]) == "trait_forbidden"
    assert code([trait], GLOBAL) is None
    assert code([trait], Caller()) == "trait_forbidden"


def test_namespaces_that_only_resemble_control_pass() -> None:
    assert code(["controller:x", "Control:x", "team:control"]) is None


def test_rules_apply_in_the_contracts_order() -> None:
    """Invalid before duplicate before forbidden, whatever the order of the traits."""
    assert code(["control:a", "b", "b", "9"]) == "trait_invalid"
    assert code(["control:a", "b", "b"]) == "trait_duplicate"
