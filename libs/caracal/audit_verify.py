"""`caracal audit verify`: recompute the admin audit chain and name every sealed row that does not fit.

First pass, in chain order: a missing chain_seq is a deleted row; a row whose MAC does not follow
from the previous row's is suspect. Second pass, around each run of suspects only: the true order
is rebuilt by following the links (which row's MAC follows from which), so a row that moved is
named as reordered, with the position it was sealed at, and one that no link reaches as edited.
Then every checkpoint's signature, and its chain_seq and MAC against the row it names. Each row is
checked with the key that sealed it: rotation checkpoints (signed by both keys) say where a key
took over (caracal.audit_keys).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from caracal.audit_chain import GENESIS, WRITTEN_SELECT, canonical_content, checkpoint_signature, link
from caracal.audit_keys import KeyEpochs, KeysMissing, load_epochs
from caracal.db.engine import plain_url
from caracal.db.query import Row
from caracal.settings import KeyRing

READ_BATCH = 5000
WINDOW = 64  # rows either side of a suspect run searched for the links that explain it
PROGRESS_EVERY = 100_000

_SEALED = (
    f"SELECT {WRITTEN_SELECT}, sealed_at, chain_seq, mac FROM admin_audit_events"  # noqa: S608 - constants
    " WHERE chain_seq > $1 ORDER BY chain_seq LIMIT $2"
)
_AROUND = (
    f"SELECT {WRITTEN_SELECT}, sealed_at, chain_seq, mac FROM admin_audit_events"  # noqa: S608 - constants
    " WHERE chain_seq BETWEEN $1 AND $2 ORDER BY chain_seq"
)
_COUNTS = "SELECT count(chain_seq) AS sealed, count(*) - count(chain_seq) AS unsealed FROM admin_audit_events"
_CHECKPOINTS = """
    SELECT c.chain_seq, c.mac, c.created_at, c.signature, c.previous_key_id, e.id AS row_id, e.mac AS row_mac
      FROM admin_audit_checkpoints c LEFT JOIN admin_audit_events e ON e.chain_seq = c.chain_seq
     ORDER BY c.chain_seq
"""


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing that does not fit: what it is, where (chain_seq, row id when there is one), why."""

    kind: str  # edited | deleted | reordered | duplicate | checkpoint
    chain_seq: int
    row_id: str | None
    detail: str

    def line(self) -> str:
        where = f"chain_seq {self.chain_seq}" + (f", row {self.row_id}" if self.row_id else "")
        return f"{self.kind.upper()}: {where}: {self.detail}"


@dataclass
class Walk:
    """State of the first pass between rows."""

    expected: int = 1
    stored: bytes = GENESIS  # the previous row's MAC as stored
    computed: bytes = GENESIS  # the MAC the previous row should have, given its content
    checked: int = 0
    suspects: list[int] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)


class ChainVerifier:
    def __init__(self, conn: asyncpg.Connection, epochs: KeyEpochs, say: Callable[[str], None]) -> None:
        self.conn = conn
        self.epochs = epochs
        self.say = say

    async def verify(self) -> list[Finding]:
        for line in self.epochs.lines():
            self.say(line)
        counts = await self.conn.fetchrow(_COUNTS)
        self.say(f"{counts['sealed']:,} sealed rows, {counts['unsealed']:,} not sealed yet (not checked)")
        self.say("pass 1: recomputing every MAC in chain order")
        walk = await self._first_pass()
        self.say(f"pass 1: {walk.checked:,} rows read, {len(walk.suspects)} with a MAC that does not follow")
        findings = walk.findings
        for first, last in _runs(walk.suspects):
            self.say(f"pass 2: rebuilding the order around chain_seq {first}..{last}")
            findings += await self._explain(first, last)
        self.say("checking the signed checkpoints")
        findings += await self._checkpoints()
        return sorted(findings, key=lambda f: (f.chain_seq, f.kind))

    async def _first_pass(self) -> Walk:
        walk = Walk()
        after = 0
        while rows := await self.conn.fetch(_SEALED, after, READ_BATCH, record_class=Row):
            for row in rows:
                self._step(walk, row)
            after = rows[-1].chain_seq
            if walk.checked // PROGRESS_EVERY != (walk.checked - len(rows)) // PROGRESS_EVERY:
                self.say(f"pass 1: {walk.checked:,} rows checked (chain_seq {after})")
        return walk

    def _step(self, walk: Walk, row: Any) -> None:
        walk.checked += 1
        if row.chain_seq < walk.expected:
            walk.findings.append(
                Finding("duplicate", row.chain_seq, row.id, "a second row holds this position")
            )
            return
        if row.chain_seq > walk.expected:
            gone = f"{walk.expected}" + (
                f"..{row.chain_seq - 1}" if row.chain_seq - 1 > walk.expected else ""
            )
            detail = f"sealed rows {gone} are missing before this one (deleted); this row follows the gap"
            walk.findings.append(Finding("deleted", walk.expected, None, detail))
            walk.stored = walk.computed = row.mac  # its link is to a row that is gone: start again here
        else:
            content = canonical_content(row)
            key = self.epochs.key_for(row.chain_seq)
            computed = link(key, walk.stored, content)
            follows = row.mac in (computed, link(key, walk.computed, content))
            if not follows:
                walk.suspects.append(row.chain_seq)
            walk.stored, walk.computed = row.mac, computed
        walk.expected = row.chain_seq + 1

    async def _explain(self, first: int, last: int) -> list[Finding]:
        """Follow the links from the last good row before `first`: the row each MAC leads to is the
        true next one. Moved rows get `reordered`; suspects that no link reaches are `edited`."""
        rows = await self.conn.fetch(_AROUND, max(1, first - WINDOW), last + WINDOW, record_class=Row)
        anchor = next((r for r in rows if r.chain_seq == first - 1), None)
        position, mac = (first - 1, anchor.mac) if anchor is not None else (0, GENESIS)
        placed: dict[str, int] = {}
        candidates = [r for r in rows if r.chain_seq >= first]
        while (found := self._next(position + 1, mac, candidates, placed)) is not None:
            position += 1
            placed[found.id] = position
            mac = found.mac
            if position > last and found.chain_seq == position:
                break  # back in step with the stored order
        judged = (self._judge(row, placed.get(row.id)) for row in rows if first <= row.chain_seq <= last)
        return [finding for finding in judged if finding is not None]

    def _next(self, position: int, mac: bytes, candidates: list[Any], placed: dict[str, int]) -> Any | None:
        key = self.epochs.key_for(position)
        for row in candidates:
            if row.id not in placed and link(key, mac, canonical_content(row)) == row.mac:
                return row
        return None

    @staticmethod
    def _judge(row: Any, position: int | None) -> Finding | None:
        """None for a row in its place (its MAC looked wrong only because a neighbour moved)."""
        if position is None:
            return Finding("edited", row.chain_seq, row.id, "its content or MAC changed after sealing")
        if position != row.chain_seq:
            return Finding("reordered", row.chain_seq, row.id, f"it was sealed at chain_seq {position}")
        return None

    async def _checkpoints(self) -> list[Finding]:
        findings, count = [], 0
        for cp in await self.conn.fetch(_CHECKPOINTS):
            count += 1
            seq = cp["chain_seq"]
            signed = cp["previous_key_id"] is not None or (
                checkpoint_signature(self.epochs.key_for(seq), seq, cp["mac"], cp["created_at"])
                == cp["signature"]
            )  # a rotation checkpoint's two signatures are checked with the epochs (rotation_findings)
            if not signed:
                findings.append(Finding("checkpoint", seq, None, "its signature does not match (edited)"))
            elif cp["row_id"] is None:
                findings.append(Finding("checkpoint", seq, None, "the row it names is gone (rows deleted)"))
            elif cp["row_mac"] != cp["mac"]:
                findings.append(Finding("checkpoint", seq, cp["row_id"], "the row's MAC differs from it"))
        self.say(f"{count:,} checkpoints read")
        rotations = [Finding("checkpoint", seq, None, detail) for seq, detail in self.epochs.problems]
        return findings + rotations


def _runs(positions: list[int]) -> list[tuple[int, int]]:
    """Consecutive positions grouped: [5, 6, 7, 20] -> [(5, 7), (20, 20)]."""
    runs: list[tuple[int, int]] = []
    for p in positions:
        if runs and p <= runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], p)
        else:
            runs.append((p, p))
    return runs


async def verify_chain(database_url: str, keys: KeyRing, say: Callable[[str], None]) -> list[Finding]:
    """Every finding; raises KeysMissing when a key that sealed part of the chain is not in `keys`."""
    conn = await asyncpg.connect(plain_url(database_url), timeout=10)
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):  # one consistent view
            return await ChainVerifier(conn, await load_epochs(conn, keys), say).verify()
    finally:
        await conn.close()


def verify_main() -> int:
    """The command: 0 when the chain is intact, 1 when something does not fit, 2 when it cannot run."""
    from caracal.cli import say, settings_or_exit  # noqa: PLC0415 - cli imports this module lazily

    settings = settings_or_exit()
    if not settings.database_url or settings.audit_hmac_key is None:
        say("caracal audit verify needs DATABASE_URL and AUDIT_HMAC_KEY (the key the reaper seals with)")
        return 2
    say("verifying the admin audit chain")
    try:
        findings = asyncio.run(verify_chain(settings.database_url, settings.audit_hmac_key, say))
    except KeysMissing as exc:
        say(str(exc))
        return 2
    for finding in findings:
        say(finding.line())
    if findings:
        say(f"the chain is NOT intact: {len(findings)} finding(s)")
        return 1
    say("the chain is intact")
    return 0
