"""Re-encrypting data at rest under a new key: zone DEKs (CARACAL_KEK) and STS-read values (ZONE_KEK).

Both walk their table in primary-key order, one transaction per batch (rows locked FOR UPDATE, so
an API writing the same row waits for the batch and is never overwritten with a stale value), and
commit as they go: an interrupted run keeps what it committed and the next run starts over from
the beginning, skipping what is already under the new key. So re-running is always safe, and a run
with nothing left to do changes nothing. docs/security.md has the operator's procedure.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import asyncpg
from cryptography.exceptions import InvalidTag

from caracal.cli import say, settings_or_exit
from caracal.crypto import KeyUnavailable, seal, unwrap_dek
from caracal.db.engine import plain_url
from caracal.sealing import SealedValueInvalid, open_secret_config, open_token, seal_secret_config, seal_token
from caracal.settings import KeyRing

T = TypeVar("T")
R = TypeVar("R")
BATCH = 500
Say = Callable[[str], None]

_ZONES = """
    SELECT id, dek_ciphertext, kek_arn FROM zones
     WHERE kek_arn IS DISTINCT FROM $1 AND id > $2 ORDER BY id LIMIT $3 FOR UPDATE
"""
# one statement per batch: the new values travel as arrays (a round trip per row costs 5x the time)
_REWRAP = """
    UPDATE zones AS z SET dek_ciphertext = u.dek, kek_arn = $3
      FROM unnest($1::text[], $2::bytea[]) AS u(id, dek) WHERE z.id = u.id
"""
_PROVIDERS = """
    SELECT id, secret_config_ct, secret_config_nonce FROM providers
     WHERE secret_config_ct IS NOT NULL AND id > $1 ORDER BY id LIMIT $2 FOR UPDATE
"""
_RESEAL_PROVIDERS = """
    UPDATE providers AS p SET secret_config_ct = u.a, secret_config_nonce = u.b
      FROM unnest($1::text[], $2::bytea[], $3::bytea[]) AS u(id, a, b) WHERE p.id = u.id
"""
_GRANTS = """
    SELECT id, access_token_ct, refresh_token_ct FROM provider_grants
     WHERE (access_token_ct IS NOT NULL OR refresh_token_ct IS NOT NULL) AND id > $1
     ORDER BY id LIMIT $2 FOR UPDATE
"""
_RESEAL_GRANTS = """
    UPDATE provider_grants AS g SET access_token_ct = u.a, refresh_token_ct = u.b
      FROM unnest($1::text[], $2::bytea[], $3::bytea[]) AS u(id, a, b) WHERE g.id = u.id
"""


class RotationRefused(RuntimeError):
    """The keys given cannot do the rotation asked for; the message says which and why."""


@dataclass
class Tally:
    """What one run did to one table."""

    table: str
    changed: int = 0
    current: int = 0  # already under the new key
    unreadable: list[str] = field(default_factory=list)  # row ids opening under neither key

    def line(self) -> str:
        text = f"{self.table}: {self.changed} re-encrypted, {self.current} already under the new key"
        return text + (f", {len(self.unreadable)} opening under neither key" if self.unreadable else "")


async def rewrap_zone_deks(conn: asyncpg.Connection, ring: KeyRing, say: Say) -> Tally:
    """Wrap every zone DEK under the active CARACAL_KEK id; DEKs stay the same, so data under them too."""
    if ring.active is None:
        raise RotationRefused("CARACAL_KEK: required (<id>:<64 hex>,...; the first id wraps)")
    key_id, key = ring.active
    tally, after = Tally("zones"), ""
    say(f"re-wrapping zone DEKs under CARACAL_KEK id {key_id!r}, {BATCH} per transaction")
    while True:
        async with conn.transaction():
            rows = await conn.fetch(_ZONES, key_id, after, BATCH)
            wrapped = [seal(key, _unwrapped(ring, row), row["id"].encode()) for row in rows]
            await conn.execute(_REWRAP, [row["id"] for row in rows], wrapped, key_id)
        if not rows:
            return tally
        tally.changed += len(rows)
        after = rows[-1]["id"]
        say(f"zones: {tally.changed} DEKs re-wrapped so far (committed up to zone {after})")


def _unwrapped(ring: KeyRing, row: asyncpg.Record) -> bytes:
    try:
        return unwrap_dek(ring, row["id"], bytes(row["dek_ciphertext"]), row["kek_arn"])
    except KeyUnavailable as exc:
        raise RotationRefused(
            f"zone {row['id']}: its DEK is wrapped under KEK {row['kek_arn']!r}, which CARACAL_KEK "
            "does not hold (keep the old id after the new one until the rotation is done)"
        ) from exc
    except (InvalidTag, ValueError) as exc:  # the key under that id is not the one used, or no seal
        raise RotationRefused(
            f"zone {row['id']}: its DEK does not open under CARACAL_KEK id {row['kek_arn']!r} (wrong key)"
        ) from exc


@dataclass(frozen=True, slots=True)
class ZoneKeks:
    """ZONE_KEK_OLD, which sealed what is in the tables, and ZONE_KEK, which seals from now on."""

    old: bytes
    new: bytes

    def rekeyed(self, open_with: Callable[[bytes], T], seal_new: Callable[[T], R]) -> R | None:
        """The value sealed under the new key; None when it is under the new key already."""
        try:
            open_with(self.new)
            return None
        except SealedValueInvalid:
            pass
        try:
            return seal_new(open_with(self.old))
        except SealedValueInvalid as exc:
            raise Unreadable from exc


class Unreadable(Exception):
    """A sealed value opens under neither key: it is named and left as it is."""


Columns = tuple[bytes | None, bytes | None]
RowChange = Callable[[asyncpg.Record], Columns | None]  # the row's two new values; None: current


async def _reseal_table(
    conn: asyncpg.Connection, tally: Tally, sql: tuple[str, str], change: RowChange, say: Say
) -> Tally:
    """Page through `sql[0]`'s rows, writing what `change` gives with `sql[1]`, a transaction a batch."""
    query, update, after = *sql, ""
    while True:
        async with conn.transaction():
            rows = await conn.fetch(query, after, BATCH)
            ids, firsts, seconds = [], [], []
            for row in rows:
                try:
                    columns = change(row)
                except Unreadable:
                    tally.unreadable.append(row["id"])
                    continue
                if columns is None:
                    tally.current += 1
                    continue
                ids.append(row["id"])
                firsts.append(columns[0])
                seconds.append(columns[1])
            if ids:
                await conn.execute(update, ids, firsts, seconds)
            tally.changed += len(ids)
        if not rows:
            return tally
        after = rows[-1]["id"]
        say(f"{tally.line()} (committed up to id {after})")


async def reseal_provider_secrets(conn: asyncpg.Connection, keks: ZoneKeks, say: Say) -> Tally:
    """Re-seal every provider's `secret_config_ct`/`secret_config_nonce` from the old key to the new."""

    def change(row: asyncpg.Record) -> Columns | None:
        ct, nonce = bytes(row["secret_config_ct"]), bytes(row["secret_config_nonce"] or b"")
        sealed = keks.rekeyed(
            lambda key: open_secret_config(key, ct, nonce),
            lambda opened: seal_secret_config(keks.new, opened),
        )
        return None if sealed is None else (sealed.ciphertext, sealed.nonce)

    return await _reseal_table(conn, Tally("providers"), (_PROVIDERS, _RESEAL_PROVIDERS), change, say)


async def reseal_grant_tokens(conn: asyncpg.Connection, keks: ZoneKeks, say: Say) -> Tally:
    """Re-seal every provider grant's `access_token_ct` and `refresh_token_ct` from the old key to the new."""

    def column(sealed: bytes | None) -> bytes | None:
        if sealed is None:
            return None
        return keks.rekeyed(
            lambda key: open_token(key, bytes(sealed)), lambda token: seal_token(keks.new, token)
        )

    def change(row: asyncpg.Record) -> Columns | None:
        access, refresh = column(row["access_token_ct"]), column(row["refresh_token_ct"])
        if access is None and refresh is None:
            return None
        return access or row["access_token_ct"], refresh or row["refresh_token_ct"]

    return await _reseal_table(conn, Tally("provider_grants"), (_GRANTS, _RESEAL_GRANTS), change, say)


async def _connected(
    database_url: str, work: Callable[[asyncpg.Connection], Awaitable[list[Tally]]]
) -> list[Tally]:
    conn = await asyncpg.connect(plain_url(database_url), timeout=10)
    try:
        return await work(conn)
    finally:
        await conn.close()


def rotate_kek_main() -> int:
    """`caracal keys rotate-kek`: 0 when every DEK is under the active id, 2 when it cannot run."""
    settings = settings_or_exit()
    if not settings.database_url:
        return _refused("caracal keys rotate-kek needs DATABASE_URL and CARACAL_KEK")

    async def work(conn: asyncpg.Connection) -> list[Tally]:
        return [await rewrap_zone_deks(conn, settings.kek, say)]

    return _finish(settings.database_url, work, "every zone DEK is wrapped under the active KEK")


def rotate_zone_kek_main() -> int:
    """`caracal keys rotate-zone-kek`: 0 when done, 1 when some values open under neither key, 2 refused."""
    settings = settings_or_exit()
    if not settings.database_url or settings.zone_kek is None or settings.zone_kek_old is None:
        return _refused("caracal keys rotate-zone-kek needs DATABASE_URL, ZONE_KEK (new) and ZONE_KEK_OLD")
    if settings.zone_kek == settings.zone_kek_old:
        return _refused("ZONE_KEK_OLD: equals ZONE_KEK, so there is nothing to rotate")
    keks = ZoneKeks(old=settings.zone_kek_old, new=settings.zone_kek)

    async def work(conn: asyncpg.Connection) -> list[Tally]:
        say("re-sealing provider secrets and provider-grant tokens from ZONE_KEK_OLD to ZONE_KEK")
        return [await reseal_provider_secrets(conn, keks, say), await reseal_grant_tokens(conn, keks, say)]

    return _finish(settings.database_url, work, "every provider secret and grant token is under ZONE_KEK")


def _finish(
    database_url: str, work: Callable[[asyncpg.Connection], Awaitable[list[Tally]]], done: str
) -> int:
    try:
        tallies = asyncio.run(_connected(database_url, work))
    except RotationRefused as exc:
        return _refused(str(exc))
    except (OSError, asyncpg.PostgresError) as exc:  # unreachable, refused: one line, no traceback
        return _refused(f"the database did not answer: {exc}")
    unreadable = [(t.table, row_id) for t in tallies for row_id in t.unreadable]
    for tally in tallies:
        say(tally.line())
    for table, row_id in unreadable:
        say(f"UNREADABLE: {table} {row_id} opens under neither key; it was left as it is")
    if unreadable:
        say(f"not done: {len(unreadable)} value(s) could not be opened (the rest is re-encrypted)")
        return 1
    say(f"done: {done}")
    return 0


def _refused(line: str) -> int:
    print(f"caracal: {line}", file=sys.stderr)
    return 2
