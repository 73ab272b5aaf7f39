"""A Jepsen-style total-queue checker for outbox streams, and the concurrent workload it judges."""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from caracal.events import verify
from caracal.outbox import record_event
from tests.support import HMAC_KEY_HEX

KEY = bytes.fromhex(HMAC_KEY_HEX)
WRITERS = 3

Stored = dict[str, tuple[str, int, int]]  # outbox id -> (stream, txid, seq), as Postgres holds the row
Published = dict[str, list[dict[str, str]]]  # stream -> its entries' fields, in stream order


@dataclass
class Txn:
    """One writer transaction: its events (stream, outbox id), when it began, when COMMIT was acknowledged."""

    writer: int
    began: float
    events: list[tuple[str, str]] = field(default_factory=list)
    acked: float | None = None
    # open -> committing -> committed | unknown (COMMIT failed: maybe applied); or rolled_back | failed
    outcome: str = "open"


class Workload:
    """Concurrent writers recording events through record_event; some transactions slow, some rolled back."""

    def __init__(self, engine: AsyncEngine, streams: tuple[str, ...], *, max_events: int = 2000) -> None:
        self.engine = engine
        self.streams = streams
        self.max_events = max_events
        self.seed = random.randrange(2**32)
        self.history: list[Txn] = []
        self.written = 0
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._writer(w)) for w in range(WRITERS)]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.wait_for(asyncio.gather(*self._tasks), timeout=30)

    @property
    def done(self) -> bool:
        return self._stop.is_set() or self.written >= self.max_events

    def committed_since(self, moment: float) -> int:
        return sum(1 for t in self.history if t.outcome == "committed" and t.began > moment)

    async def one_per_stream(self) -> dict[str, str]:
        """One committed transaction with an event on every stream, recorded in the history."""
        txn = Txn(-1, time.monotonic())
        self.history.append(txn)
        async with self.engine.begin() as conn:
            for stream in self.streams:
                txn.events.append((stream, await record_event(conn, stream, {"marker": "yes"})))
        txn.acked = time.monotonic()
        txn.outcome = "committed"
        return dict(txn.events)

    async def _writer(self, writer: int) -> None:
        rng = random.Random(self.seed + writer)
        while not self.done:
            txn = Txn(writer, time.monotonic())
            self.history.append(txn)
            try:
                await self._transaction(txn, rng)
            except Exception:  # the server went away; a failed COMMIT may or may not have applied
                txn.outcome = "unknown" if txn.outcome == "committing" else "failed"
                await asyncio.sleep(0.1)
            await asyncio.sleep(rng.uniform(0.0, 0.02))

    async def _transaction(self, txn: Txn, rng: random.Random) -> None:
        async with self.engine.connect() as conn:
            trans = await conn.begin()
            for k in range(rng.randint(1, 3)):
                stream = rng.choice(self.streams)
                outbox_id = await record_event(conn, stream, {"writer": txn.writer, "k": k})
                txn.events.append((stream, outbox_id))
                self.written += 1
            if rng.random() < 0.1:  # holds the xmin horizon back while later transactions commit
                await conn.execute(text("SELECT pg_sleep(:s)"), {"s": rng.uniform(0.05, 0.5)})
            if rng.random() < 0.1:
                await trans.rollback()
                txn.outcome = "rolled_back"
                return
            txn.outcome = "committing"
            await trans.commit()
            txn.acked = time.monotonic()
            txn.outcome = "committed"


@dataclass
class Verdict:
    committed: int
    published: int
    lost: list[str]
    unexpected: list[str]
    duplicates: list[str]
    out_of_order: list[str]
    real_time_violations: list[str]
    bad_signatures: list[str]

    PROBLEMS = ("lost", "unexpected", "duplicates", "out_of_order", "real_time_violations", "bad_signatures")

    @property
    def ok(self) -> bool:
        return not any(getattr(self, name) for name in self.PROBLEMS)

    def report(self) -> str:
        parts = [f"committed={self.committed} published={self.published}"]
        for name in self.PROBLEMS:
            found: list[str] = getattr(self, name)
            if found:
                parts.append(f"{name}={len(found)} e.g. {found[:5]}")
        return "; ".join(parts)


def check_total_queue(history: list[Txn], published: Published, stored: Stored) -> Verdict:
    """Every committed event exactly once in its stream, in (txid, seq) order and in real-time order.

    A transaction whose COMMIT failed counts as committed exactly when Postgres holds its rows;
    one rolled back or failed before COMMIT must leave no entry.
    """
    committed = [
        t
        for t in history
        if t.events and (t.outcome == "committed" or (t.outcome == "unknown" and t.events[0][1] in stored))
    ]
    expected = {outbox_id: stream for t in committed for stream, outbox_id in t.events}
    positions: dict[str, dict[str, int]] = {stream: {} for stream in published}
    seen: Counter[tuple[str, str]] = Counter()
    bad_signatures = []
    for stream, entries in published.items():
        for position, fields in enumerate(entries):
            outbox_id = fields.get("outbox_id", "<none>")
            seen[(stream, outbox_id)] += 1
            positions[stream].setdefault(outbox_id, position)
            if not verify(KEY, stream, fields):
                bad_signatures.append(outbox_id)
    return Verdict(
        committed=len(expected),
        published=sum(seen.values()),
        lost=[i for i, stream in expected.items() if i not in positions.get(stream, {})],
        unexpected=[f"{stream}:{i}" for stream, i in seen if expected.get(i) != stream],
        duplicates=[f"{stream}:{i} x{n}" for (stream, i), n in seen.items() if n > 1],
        out_of_order=_out_of_order(published, stored),
        real_time_violations=[v for s in published for v in _real_time(s, committed, positions[s])],
        bad_signatures=bad_signatures,
    )


def _out_of_order(published: Published, stored: Stored) -> list[str]:
    """Entries whose (txid, seq) does not follow the previous entry's in the same stream."""
    found = []
    for stream, entries in published.items():
        keys = [(stored[i][1:], i) for i in (e.get("outbox_id", "") for e in entries) if i in stored]
        found += [
            f"{stream}: {b} {kb} after {a} {ka}" for (ka, a), (kb, b) in itertools.pairwise(keys) if kb <= ka
        ]
    return found


def _real_time(stream: str, committed: list[Txn], positions: dict[str, int]) -> list[str]:
    """A transaction acknowledged before another began has all its entries before the other's."""
    spans = []
    for txn in committed:
        found = [positions[i] for s, i in txn.events if s == stream and i in positions]
        if found:
            spans.append((txn, min(found), max(found)))
    by_ack = sorted((s for s in spans if s[0].acked is not None), key=lambda s: s[0].acked or 0.0)
    violations, done, latest = [], 0, (-1, "")
    for txn, first, _ in sorted(spans, key=lambda s: s[0].began):
        while done < len(by_ack) and (by_ack[done][0].acked or 0.0) < txn.began:
            latest = max(latest, (by_ack[done][2], by_ack[done][0].events[0][1]))
            done += 1
        if latest[0] >= first:
            violations.append(
                f"{stream}: {txn.events[0][1]} began after {latest[1]} was acknowledged; precedes it"
            )
    return violations
