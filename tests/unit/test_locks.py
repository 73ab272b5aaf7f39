"""Advisory-lock keys: one place holds them all, and no two locks share a key."""

from __future__ import annotations

import re
from itertools import permutations
from pathlib import Path

from caracal.db import locks

ROOT = Path(__file__).resolve().parents[2]
_TAKES_A_LOCK = re.compile(r"pg_(try_)?advisory_(xact_)?(un)?lock")
_LITERAL_KEY = re.compile(r"\b\d{10,}\b")
_LITERAL_PREFIX = re.compile(r"hashtext(extended)?\('(?!\{)|[\"']zones\.slug:|[\"']caracal\.outbox:")


def test_every_fixed_key_is_distinct_and_a_bigint() -> None:
    declared = {name: value for name, value in vars(locks).items() if name.endswith("_LOCK_KEY")}
    assert declared == locks.FIXED_KEYS, "a key is missing from FIXED_KEYS"
    values = list(declared.values())
    assert len(set(values)) == len(values), f"two locks share a key: {declared}"
    assert all(2**32 <= v < 2**63 for v in values), "fixed keys stay clear of 32-bit hashed keys"


def test_derived_key_families_cannot_meet() -> None:
    """No prefix starts another, so `prefix || name` of two families is never the same text."""
    declared = {name: value for name, value in vars(locks).items() if name.endswith("_PREFIX")}
    assert declared == locks.DERIVED_PREFIXES, "a prefix is missing from DERIVED_PREFIXES"
    for first, second in permutations(declared.values(), 2):
        assert not second.startswith(first), (first, second)


def test_code_that_takes_an_advisory_lock_takes_its_key_from_the_locks_module() -> None:
    """A literal key or prefix written beside a lock call elsewhere would escape the checks above."""
    strays = []
    for path in [*ROOT.glob("libs/**/*.py"), *ROOT.glob("services/**/*.py")]:
        source = path.read_text()
        takes_a_lock = path.name != "locks.py" and _TAKES_A_LOCK.search(source)
        if takes_a_lock and (_LITERAL_KEY.search(source) or _LITERAL_PREFIX.search(source)):
            strays.append(str(path.relative_to(ROOT)))
    assert strays == []
