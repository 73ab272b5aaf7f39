"""The admin audit chain: each row's canonical content, its HMAC link, sealing in commit order, checkpoints.

Writers never touch the chain: a row is inserted in its mutation's transaction as before. The one
sealer (a reaper job under an advisory lock) later takes unsealed rows whose transaction is older
than every transaction still running, in (txid, seq) order, as the outbox dispatcher does, and gives
each the next `chain_seq` and `mac = HMAC-SHA256(key, previous mac || canonical content)`. The
format is specified in docs/audit-chain.md; `caracal audit verify` (caracal.audit_verify) checks it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from caracal.settings import KeyRing
from caracal.timefmt import iso_us

log = logging.getLogger("caracal.audit_chain")

GENESIS = bytes(32)  # the "previous mac" of chain_seq 1
CONTENT_VERSION = "caracal.audit.v1"
CHECKPOINT_VERSION = "caracal.audit.checkpoint.v1"
ROTATION_VERSION = "caracal.audit.rotation.v1"
SEAL_BATCH = 1000
CHECKPOINT_EVERY_S = 60.0

# Every column a row's MAC covers, in this order (docs/audit-chain.md). Not covered: txid and seq
# (only the sealer's queue order), chain_seq (the position: bound by the link to the previous mac,
# so changing it shows as a gap or a reorder) and mac itself.
CONTENT_COLUMNS = (
    "id",
    "request_id",
    "actor_id",
    "actor_name",
    "actor_scope",
    "action",
    "method",
    "path",
    "zone_id",
    "entity_type",
    "entity_id",
    "status_code",
    "payload",  # payload_json::text: Postgres' own rendering of the JSONB value, key order included
    "occurred_at",
    "sealed_at",
)
# The columns as written (sealed_at comes later); payload_json as its text, so the MAC does not
# depend on a JSON decoder's choices (floats, key order).
WRITTEN_SELECT = ", ".join(
    "payload_json::text AS payload" if name == "payload" else name
    for name in CONTENT_COLUMNS
    if name != "sealed_at"
)

_HEAD = text(
    """
    SELECT h.chain_seq, h.mac, c.chain_seq AS checkpoint_seq, c.created_at AS checkpoint_at,
           c.key_id AS checkpoint_key_id, now() AS now
      FROM (SELECT 1) AS one
      LEFT JOIN LATERAL (SELECT chain_seq, mac FROM admin_audit_events WHERE chain_seq IS NOT NULL
                          ORDER BY chain_seq DESC LIMIT 1) AS h ON true
      LEFT JOIN LATERAL (SELECT chain_seq, created_at, key_id FROM admin_audit_checkpoints
                          ORDER BY chain_seq DESC LIMIT 1) AS c ON true
    """
)
# Only rows whose transaction is older than every running one: no transaction still in progress
# can later commit a row that belongs before them.
_PENDING = text(
    f"SELECT {WRITTEN_SELECT} FROM admin_audit_events"  # noqa: S608 - constant column names
    " WHERE chain_seq IS NULL AND txid < pg_snapshot_xmin(pg_current_snapshot())"
    " ORDER BY txid, seq LIMIT :limit"
)
_SEAL = text(
    """
    UPDATE admin_audit_events AS e
       SET chain_seq = s.chain_seq, mac = s.mac, sealed_at = :sealed_at
      FROM unnest(CAST(:ids AS text[]), CAST(:seqs AS bigint[]), CAST(:macs AS bytea[]))
           AS s(id, chain_seq, mac)
     WHERE e.id = s.id AND e.chain_seq IS NULL
    """
)
_CHECKPOINT = text(
    "INSERT INTO admin_audit_checkpoints"
    " (chain_seq, mac, created_at, signature, key_id, previous_key_id, previous_signature)"
    " VALUES (:chain_seq, :mac, :created_at, :signature, :key_id, :previous_key_id, :previous_signature)"
)


class AuditKeyMissing(RuntimeError):
    """The chain head was sealed under a key id that AUDIT_HMAC_KEY does not hold: nothing is sealed."""


class ChainConflict(RuntimeError):
    """Another sealer changed the chain under this one (its lock was lost): this batch rolls back."""


def timestamp(value: datetime | None) -> str | None:
    """The one rendering of a time in the chain: UTC, microseconds, `Z`."""
    return None if value is None else iso_us(value)


def canonical_content(row: Any, sealed_at: datetime | None = None) -> bytes:
    """The bytes a row's MAC covers: a JSON array (ASCII, no spaces) of the version and CONTENT_COLUMNS."""
    values: list[Any] = [CONTENT_VERSION]
    for name in CONTENT_COLUMNS:
        if name == "sealed_at":
            values.append(timestamp(sealed_at if sealed_at is not None else row.sealed_at))
        elif name == "occurred_at":
            values.append(timestamp(row.occurred_at))
        else:
            values.append(getattr(row, name))
    return json.dumps(values, separators=(",", ":")).encode("ascii")


def link(key: bytes, previous_mac: bytes, content: bytes) -> bytes:
    """mac = HMAC-SHA256(key, previous mac || content)."""
    return hmac.new(key, previous_mac + content, hashlib.sha256).digest()


def checkpoint_signature(key: bytes, chain_seq: int, mac: bytes, created_at: datetime) -> bytes:
    """HMAC-SHA256(key, JSON [version, chain_seq, mac hex, created_at])."""
    body = json.dumps(
        [CHECKPOINT_VERSION, chain_seq, mac.hex(), timestamp(created_at)], separators=(",", ":")
    )
    return hmac.new(key, body.encode("ascii"), hashlib.sha256).digest()


class Rotation(NamedTuple):
    """A rotation checkpoint's content: at this head, key `key_id` takes over from `previous_key_id`."""

    chain_seq: int
    mac: bytes
    created_at: datetime
    previous_key_id: str
    key_id: str


def rotation_signature(key: bytes, rotation: Rotation) -> bytes:
    """HMAC-SHA256(key, JSON [version, chain_seq, mac hex, created_at, from id, to id]); both keys sign."""
    seq, mac, created_at, previous_key_id, key_id = rotation
    body = [ROTATION_VERSION, seq, mac.hex(), timestamp(created_at), previous_key_id, key_id]
    return hmac.new(key, json.dumps(body, separators=(",", ":")).encode("ascii"), hashlib.sha256).digest()


@dataclass(frozen=True, slots=True)
class SealReport:
    """One sealing batch: rows sealed, whether more were waiting, the checkpoint written (if any)."""

    sealed: int
    more: bool
    checkpoint: int | None = None
    rotated_to: str | None = None  # the key id the chain continues under after `checkpoint`


async def seal_batch(conn: AsyncConnection, keys: KeyRing, limit: int = SEAL_BATCH) -> SealReport:
    """Seal up to `limit` committed rows after the chain head, in the caller's transaction, and write
    a checkpoint when one is due. Runs under the sealer's lock; a second sealer's rows conflict on
    the chain_seq key (or the seal count) and roll back rather than fork the chain.

    The rows are sealed under the key of the newest checkpoint; when that is not the first key of
    `keys` (a rotation), this batch still uses it and ends with a rotation checkpoint signed by both,
    after which the first key seals."""
    if keys.active is None:
        raise AuditKeyMissing("AUDIT_HMAC_KEY: no key to seal with")
    active_id = keys.active[0]
    head = (await conn.execute(_HEAD)).one()
    epoch_id = head.checkpoint_key_id or active_id  # no checkpoint yet: the chain starts under it
    key = keys.get(epoch_id)
    if key is None:
        raise AuditKeyMissing(
            f"AUDIT_HMAC_KEY: the chain head was sealed with key id {epoch_id!r}, which it does not hold"
            " (list it after the new key to rotate; a reaper with the old keys only must be restarted)"
        )
    rows = (await conn.execute(_PENDING, {"limit": limit})).all()
    chain_seq, mac = await _seal_rows(conn, key, head, rows)
    if epoch_id != active_id and chain_seq not in (0, head.checkpoint_seq):
        await _write_checkpoint(
            conn, keys, Head(chain_seq, mac, head.now), active_id, previous_key_id=epoch_id
        )
        return SealReport(len(rows), len(rows) == limit, chain_seq, rotated_to=active_id)
    checkpoint = None
    if epoch_id == active_id and _checkpoint_due(head, chain_seq):
        await _write_checkpoint(conn, keys, Head(chain_seq, mac, head.now), active_id)
        checkpoint = chain_seq
    return SealReport(len(rows), len(rows) == limit, checkpoint)


@dataclass(frozen=True, slots=True)
class Head:
    """The chain's last sealed position and MAC, at the time the batch reads as now."""

    chain_seq: int
    mac: bytes
    now: datetime


async def _seal_rows(conn: AsyncConnection, key: bytes, head: Any, rows: Sequence[Any]) -> tuple[int, bytes]:
    chain_seq, mac = (head.chain_seq or 0), (head.mac or GENESIS)
    if not rows:
        return chain_seq, mac
    ids, seqs, macs = [], [], []
    for row in rows:
        chain_seq += 1
        mac = link(key, mac, canonical_content(row, head.now))
        ids.append(row.id)
        seqs.append(chain_seq)
        macs.append(mac)
    params = {"sealed_at": head.now, "ids": ids, "seqs": seqs, "macs": macs}
    sealed = (await conn.execute(_SEAL, params)).rowcount
    if sealed != len(rows):
        raise ChainConflict(f"sealed {sealed} of {len(rows)} rows: another sealer is running")
    return chain_seq, mac


def _checkpoint_due(head: Any, chain_seq: int) -> bool:
    if chain_seq in (0, head.checkpoint_seq):
        return False
    return head.checkpoint_at is None or (head.now - head.checkpoint_at).total_seconds() >= CHECKPOINT_EVERY_S


async def _write_checkpoint(
    conn: AsyncConnection, keys: KeyRing, head: Head, key_id: str, previous_key_id: str | None = None
) -> None:
    key, previous = keys.get(key_id), keys.get(previous_key_id) if previous_key_id else None
    assert key is not None  # the caller took both ids from `keys`
    if previous_key_id is None:
        signature, previous_signature = checkpoint_signature(key, head.chain_seq, head.mac, head.now), None
    else:
        assert previous is not None
        at = Rotation(head.chain_seq, head.mac, head.now, previous_key_id, key_id)
        signature, previous_signature = rotation_signature(key, at), rotation_signature(previous, at)
    await conn.execute(
        _CHECKPOINT,
        {
            "chain_seq": head.chain_seq,
            "mac": head.mac,
            "created_at": head.now,
            "signature": signature,
            "key_id": key_id,
            "previous_key_id": previous_key_id,
            "previous_signature": previous_signature,
        },
    )
    # the log line is a copy of the head outside the database, for whoever keeps the logs
    log.info("audit chain checkpoint: chain_seq %d, mac %s, key %s", head.chain_seq, head.mac.hex(), key_id)
    if previous_key_id is not None:
        log.info(
            "audit chain: key %s seals the rows after chain_seq %d (was %s)",
            key_id,
            head.chain_seq,
            previous_key_id,
        )
