"""Wire timestamps: ISO-8601 UTC, exactly three fractional digits, `Z` (CONTRACT.md §0)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

from caracal.timefmt import iso_ms


def reference(value: datetime) -> str:
    """Written independently of iso_ms: strftime and integer milliseconds."""
    utc = value.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def test_iso_ms_matches_the_reference_for_any_instant_and_offset() -> None:
    """Random instants (whole seconds included) in UTC and in other offsets render as the reference."""
    rng = random.Random(20261201)
    for _ in range(5000):
        offset = timezone(timedelta(minutes=rng.choice([0, 60, -300, 330, 840])))
        value = datetime(2000, 1, 1, tzinfo=UTC) + timedelta(
            seconds=rng.randrange(2_000_000_000),
            microseconds=rng.choice([0, 1, 999, 1000, rng.randrange(10**6)]),
        )
        value = value.astimezone(offset)
        assert iso_ms(value) == reference(value), value


def test_iso_ms_keeps_none_and_truncates_rather_than_rounds() -> None:
    """None stays None; 999.999 ms is .999, never the next second."""
    assert iso_ms(None) is None
    assert iso_ms(datetime(2026, 6, 3, 10, 12, 13, 999_999, tzinfo=UTC)) == "2026-06-03T10:12:13.999Z"
    assert iso_ms(datetime(2026, 6, 3, 10, 12, 13, tzinfo=UTC)) == "2026-06-03T10:12:13.000Z"
