"""Keyset pagination: opaque base64url JSON cursors `{ts, id}` at full precision, newest first."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import BindParameter, ColumnElement, Integer, Select, and_, bindparam, or_
from sqlalchemy.ext.asyncio import AsyncConnection

from caracal.db.query import Query
from caracal.errors import InvalidInput
from caracal.ids import is_valid_param
from caracal.timefmt import iso_us, parse_iso


@dataclass(frozen=True, slots=True)
class Page:
    limit: int
    after: tuple[datetime, str] | None = None


def encode_cursor(ts: datetime, row_id: str) -> str:
    raw = json.dumps({"ts": iso_us(ts), "id": row_id}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
        ts, row_id = data["ts"], data["id"]
        if not (isinstance(ts, str) and ts and isinstance(row_id, str) and is_valid_param(row_id)):
            raise ValueError("empty or malformed cursor fields")
        return parse_iso(ts).astimezone(UTC), row_id
    except (ValueError, KeyError, TypeError, OverflowError) as exc:
        raise InvalidInput("invalid_cursor", "the cursor was not issued by this API") from exc


def parse_page(limit: str | None, cursor: str | None, *, default: int = 200, maximum: int = 500) -> Page:
    """Query parameters `limit` (1..maximum) and `cursor` (1..512 chars) of a list route."""
    size = default
    if limit is not None:
        digits = limit.strip()
        # isdigit() alone admits '²' and 5000-digit strings, which int() refuses
        size = int(digits) if digits.isascii() and digits.isdigit() and len(digits) <= 9 else 0
        if not 1 <= size <= maximum:
            raise InvalidInput("invalid_query", f"limit must be an integer from 1 to {maximum}")
    if cursor is None:
        return Page(size)
    if not 1 <= len(cursor) <= 512:
        raise InvalidInput("invalid_query", "cursor must be 1..512 characters")
    return Page(size, decode_cursor(cursor))


class PagedQuery:
    """A list query built once: the first page and the pages after a cursor, with bound parameters
    (`limit`, and `after_ts`/`after_id`), so a request builds no SQL."""

    def __init__(
        self, query: Select[Any], created_at: ColumnElement[datetime], row_id: ColumnElement[str]
    ) -> None:
        ordered = query.order_by(created_at.desc(), row_id.desc()).limit(bindparam("limit", type_=Integer))
        after_ts: BindParameter[datetime] = bindparam("after_ts", type_=created_at.type)
        after_id: BindParameter[str] = bindparam("after_id", type_=row_id.type)
        self.first = ordered
        later = or_(created_at < after_ts, and_(created_at == after_ts, row_id < after_id))
        self.after = ordered.where(later)

        self._first, self._after = Query(self.first), Query(self.after)

    def statement(self, page: Page, **params: Any) -> tuple[Select[Any], dict[str, Any]]:
        if page.after is None:
            return self.first, {"limit": page.limit, **params}
        ts, last_id = page.after
        return self.after, {"limit": page.limit, "after_ts": ts, "after_id": last_id, **params}

    async def rows(self, conn: AsyncConnection, page: Page, **params: Any) -> list[Any]:
        """The page's rows (on the driver connection in autocommit; see caracal.db.query)."""
        statement, values = self.statement(page, **params)
        return await (self._first if statement is self.first else self._after).rows(conn, values)


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Listing(Generic[T]):
    """One page of response objects and the cursor of the next page (None on a short page)."""

    items: list[T]
    next_cursor: str | None


def listing(
    rows: Sequence[Any],
    page: Page,
    to_wire: Callable[[Any], T],
    ts_attr: str = "created_at",
) -> Listing[T]:
    cursor = None
    if rows and len(rows) >= page.limit:
        last = rows[-1]
        cursor = encode_cursor(getattr(last, ts_attr), str(last.id))
    return Listing([to_wire(row) for row in rows], cursor)
