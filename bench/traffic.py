"""Mixed zone traffic against API replicas (round robin), and the check that every write's event
reached `caracal.changes` once, in commit order: shared by `make soak` and tests/e2e/test_faults.py."""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import itertools
import json
import random
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from redis.asyncio import Redis
from tests.e2e.total_queue import Txn, Verdict, check_total_queue

from bench.http1 import FAILURES, Connection
from caracal.db.engine import plain_url
from caracal.events import CHANGES

# GET one, list a page, POST, PATCH, DELETE (archive): weights of each kind in the mix
MIX = {"get": 40, "list": 10, "post": 30, "patch": 15, "delete": 5}
WRITES_ONLY = {"post": 1}
EXPECTED = {"get": 200, "list": 200, "post": 201, "patch": 200, "delete": 204}
DOOMED_SHARE = 4  # one created zone in four is kept for a DELETE; GET and PATCH never touch those


@dataclass
class Call:
    """One request: what it was, when it was sent and answered, its status (0: no answer)."""

    kind: str
    began: float
    ended: float = 0.0
    status: int = 0
    error: str = ""  # the problem's code, or the transport error
    zone: str | None = None
    name: str | None = None  # a POST's zone name, to find the zone when the answer was lost

    @property
    def ms(self) -> float:
        return 1000 * (self.ended - self.began)

    @property
    def ok(self) -> bool:
        return self.status == EXPECTED[self.kind]


@dataclass
class Traffic:
    """`connections` callers sending `mix` round robin over `urls`; at `rate` requests/s in total
    (open loop: each call has its slot in a schedule) or as fast as answers come (rate None)."""

    urls: list[str]
    token: str
    connections: int = 32
    rate: float | None = None
    mix: dict[str, int] = field(default_factory=lambda: dict(MIX))
    timeout: float = 10.0
    calls: list[Call] = field(default_factory=list)
    live: list[str] = field(default_factory=list)
    doomed: list[str] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _connections: list[Connection] = field(default_factory=list)
    failed: int = 0  # answers >= 500 and requests with no answer, so far
    _next_slot: float = 0.0
    _count: itertools.count[int] = field(default_factory=itertools.count)
    _tag: str = field(default_factory=lambda: secrets.token_hex(4))  # zone names unique across runs

    def start(self) -> None:
        # `connections` in all, one per caller, the callers spread round robin over the replicas
        # (bench.http1: an idle connection is dropped after 2 s, before the server's 5 s keep-alive)
        headers = {"Authorization": f"Bearer {self.token}"}
        self._connections = [
            Connection(self.urls[n % len(self.urls)], headers, self.timeout) for n in range(self.connections)
        ]
        self._next_slot = time.monotonic()
        self._tasks = [asyncio.create_task(self._caller(n)) for n in range(self.connections)]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.wait_for(asyncio.gather(*self._tasks), timeout=self.timeout + 10)
        for connection in self._connections:
            connection.close()

    def since(self, moment: float) -> list[Call]:
        """Calls sent at or after `moment` (calls are appended as they are sent: in `began` order, so
        a progress line costs a slice of the recent calls, not a scan of them all)."""
        return self.calls[bisect.bisect_left(self.calls, moment, key=lambda c: c.began) :]

    async def _caller(self, n: int) -> None:
        rng = random.Random(n)
        kinds, weights = list(self.mix), list(self.mix.values())
        connection = self._connections[n]
        while not self._stop.is_set():
            await self._wait_for_slot()
            await self._send(connection, rng.choices(kinds, weights)[0])

    async def _wait_for_slot(self) -> None:
        if self.rate is None:
            return
        slot, self._next_slot = self._next_slot, max(self._next_slot, time.monotonic() - 1) + 1 / self.rate
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), max(0.0, slot - time.monotonic()))

    async def _send(self, connection: Connection, kind: str) -> None:
        if (kind in ("get", "patch") and not self.live) or (kind == "delete" and not self.doomed):
            kind = "post"
        n = next(self._count)
        call = Call(kind, time.monotonic())
        self.calls.append(call)
        method, path, body = self._request(call, n)
        try:
            status, raw = await connection.request(method, path, body)
            call.status = status
            answer = json.loads(raw) if status == 201 or status >= 400 else {}
        except FAILURES as exc:
            call.error, answer = type(exc).__name__, {}
        call.ended = time.monotonic()
        if call.status >= 500 or not call.status:
            self.failed += 1
        if call.status >= 400:
            call.error = str(answer.get("error", ""))
        elif call.status == 201:
            call.zone = answer["id"]
            (self.doomed if n % DOOMED_SHARE == 0 else self.live).append(call.zone)

    def _request(self, call: Call, n: int) -> tuple[str, str, dict[str, str] | None]:
        if call.kind == "post":
            call.name = f"traffic-{self._tag}-{n}"
            return "POST", "/v1/zones", {"name": call.name}
        if call.kind == "list":
            return "GET", "/v1/zones?limit=50", None
        if call.kind == "delete":
            call.zone = self.doomed.pop()
            return "DELETE", f"/v1/zones/{call.zone}", None
        call.zone = random.choice(self.live)
        if call.kind == "patch":
            return "PATCH", f"/v1/zones/{call.zone}", {"name": f"renamed-{n}"}
        return "GET", f"/v1/zones/{call.zone}", None


def latency_figures(calls: list[Call]) -> dict[str, tuple[int, float, float]]:
    """Per kind: answered calls, p50 and p99 in ms."""
    return figures_by_kind({kind: [c.ms for c in calls if c.kind == kind and c.status] for kind in EXPECTED})


def figures_by_kind(timings: dict[str, list[float]]) -> dict[str, tuple[int, float, float]]:
    """Per kind of EXPECTED that has timings (ms): their count, p50 and p99."""
    figures = {}
    for kind in EXPECTED:
        if ms := sorted(timings.get(kind, [])):
            figures[kind] = (len(ms), ms[len(ms) // 2], ms[min(len(ms) - 1, int(len(ms) * 0.99))])
    return figures


def statuses(calls: list[Call]) -> Counter[str]:
    return Counter(f"{c.kind} {c.status or c.error}" for c in calls)


async def undelivered(database_url: str) -> int:
    conn = await asyncpg.connect(plain_url(database_url))
    try:
        return int(await conn.fetchval("SELECT count(*) FROM event_outbox WHERE dispatched_at IS NULL"))
    finally:
        await conn.close()


STORED = (
    "SELECT id, txid::text::bigint AS txid, seq, payload_json->>'event' AS event,"
    " payload_json->>'entity_id' AS zone FROM event_outbox WHERE stream_name = $1"
)


async def delivery_verdict(database_url: str, redis_url: str, calls: list[Call]) -> tuple[Verdict, list[str]]:
    """Once nothing is undelivered: the total-queue verdict over `caracal.changes`, and the
    acknowledged writes without their event row (each 2xx POST, PATCH and DELETE has one)."""
    conn = await asyncpg.connect(plain_url(database_url))
    try:
        rows = await conn.fetch(STORED, CHANGES)
        names = dict(await conn.fetch("SELECT name, id FROM zones WHERE name LIKE 'traffic-%'"))
    finally:
        await conn.close()
    redis = Redis.from_url(redis_url)
    try:
        entries = await _whole_stream(redis, CHANGES)
    finally:
        await redis.aclose()
    published = {CHANGES: [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in entries]}
    stored = {r["id"]: (CHANGES, int(r["txid"]), int(r["seq"])) for r in rows}
    history, missing = _history(calls, rows, names)
    return check_total_queue(history, published, stored), missing


STREAM_PAGE = 10_000  # entries per XRANGE: one reply of a 10-minute soak's stream outlasted the timeout


async def _whole_stream(redis: Redis, stream: str) -> list[Any]:
    """Every entry of `stream`, oldest first, read a page at a time."""
    entries: list[Any] = []
    start = "-"
    while page := await redis.xrange(stream, min=start, count=STREAM_PAGE):
        entries.extend(page)
        if len(page) < STREAM_PAGE:
            break
        milliseconds, _, sequence = page[-1][0].decode().partition("-")
        start = f"{milliseconds}-{int(sequence) + 1}"  # just after the last entry read
    return entries


_EVENT_OF = {"post": "zone.created", "patch": "zone.updated", "delete": "zone.deleted"}


def _history(
    calls: list[Call], rows: list[asyncpg.Record], names: dict[str, str]
) -> tuple[list[Txn], list[str]]:
    """Creates are judged in real time (sent, answered); every other stored row must be published."""
    created = {r["zone"]: r["id"] for r in rows if r["event"] == "zone.created"}
    rows_of = Counter((r["event"], r["zone"]) for r in rows)
    acked = Counter((_EVENT_OF[c.kind], c.zone) for c in calls if c.ok and c.kind in _EVENT_OF)
    missing = [
        f"{event} {zone}: {n} acknowledged"
        for (event, zone), n in acked.items()
        if rows_of[(event, zone)] < n
    ]
    history, timed = [], set()
    for call in calls:
        zone = call.zone or names.get(call.name or "")
        if call.kind == "post" and zone in created:
            outcome = "committed" if call.ok else "unknown"
            acked_at = call.ended if call.ok else None
            history.append(Txn(0, call.began, [(CHANGES, created[zone])], acked_at, outcome))
            timed.add(created[zone])
    history += [Txn(0, 0.0, [(CHANGES, r["id"])], None, "committed") for r in rows if r["id"] not in timed]
    return history, missing
