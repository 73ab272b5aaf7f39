"""Timestamps on the wire: ISO-8601 UTC with exactly three fractional digits and `Z`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import overload

_ZERO = timedelta(0)


@overload
def iso_ms(value: datetime) -> str: ...
@overload
def iso_ms(value: None) -> None: ...
@overload
def iso_ms(value: datetime | None) -> str | None: ...
def iso_ms(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.utcoffset() != _ZERO:
        value = value.astimezone(UTC)
    # isoformat is C and several times faster than strftime; the driver hands out UTC already
    return value.isoformat(timespec="milliseconds")[:-6] + "Z"


def iso_us(value: datetime) -> str:
    """Full precision, for cursors: a row in the same millisecond is never skipped."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError("timestamp must carry a time zone")
    return parsed
