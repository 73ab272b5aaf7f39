"""`make soak`: mixed traffic at a share of the measured capacity through two API replicas and two
dispatchers for SOAK_SECONDS; latency per kind, 5xx, memory of every process, and every event once,
in order. `python -m bench.soak`; exits 1 when a figure misses its bound."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx
from tests.support import HMAC_KEY_HEX

from bench.api import API_COMMAND, CREATE, GET_ONE, NO_LIMITS, ApiServer, process_tree
from bench.common import BenchEnv, BenchError, bench_env, postgres_pids, running_dispatcher, say
from bench.traffic import (
    EXPECTED,
    Call,
    Traffic,
    delivery_verdict,
    figures_by_kind,
    latency_figures,
    statuses,
    undelivered,
)
from caracal.embedded import free_port

CONNECTIONS = 32
REPLICAS = 2
DISPATCHERS = 2
# closed loop, to measure capacity: the rate of its last PROBE_COUNTED_S, once the outbox, the
# dispatchers and autovacuum are busy too (a 10 s probe of a fresh system is mostly its first seconds)
PROBE_S = 60.0
PROBE_COUNTED_S = 30.0
WARMUP_S = 5.0  # at the soak's rate, before the first memory sample counts
SAMPLE_EVERY_S = 5.0
PRINT_EVERY_S = 30.0
DRAIN_WITHIN_S = 120.0
# memory is "flat" when no process of ours grew more than this from its first sample to its last
RSS_GROWTH_MAX_MB = 32.0
RSS_GROWTH_MAX_SHARE = 0.25
# the request-path goals (bench/api.py): reads 25 ms, writes 50 ms at p99; the list has none
P99_GOALS_MS = {"get": GET_ONE.max_p99_ms, "post": CREATE.max_p99_ms, "patch": CREATE.max_p99_ms}
P99_GOALS_MS["delete"] = CREATE.max_p99_ms


@dataclass
class Memory:
    """RSS samples (MiB) of each process, by label, with the time they were taken."""

    samples: dict[str, list[tuple[float, float]]] = field(default_factory=dict)

    def sample(self, processes: dict[str, int]) -> None:
        now = time.monotonic()
        for label, pid in processes.items():
            with contextlib.suppress(OSError, ValueError):
                self.samples.setdefault(label, []).append((now, _rss_mib(pid)))

    def lines(self) -> list[str]:
        return [f"{label}: {_describe(points)}" for label, points in sorted(self.samples.items())]

    def grown(self, ours: tuple[str, ...]) -> list[str]:
        """Our processes whose RSS grew past the bound (Postgres and Redis are reported only)."""
        found = []
        for label, points in self.samples.items():
            first, last = points[0][1], points[-1][1]
            bound = max(RSS_GROWTH_MAX_MB, first * RSS_GROWTH_MAX_SHARE)
            if label.startswith(ours) and last - first > bound:
                found.append(f"{label} grew {last - first:.1f} MiB (bound {bound:.1f}): {_describe(points)}")
        return found


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise ValueError(f"no VmRSS for {pid}")


def _describe(points: list[tuple[float, float]]) -> str:
    values = [v for _, v in points]
    return (
        f"first {values[0]:.1f} last {values[-1]:.1f} max {max(values):.1f} MiB,"
        f" slope {_slope(points):+.2f} MiB/min ({len(values)} samples)"
    )


def _slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of RSS over time, per minute."""
    if len(points) < 2:
        return 0.0
    mean_t = sum(t for t, _ in points) / len(points)
    mean_v = sum(v for _, v in points) / len(points)
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    return 60 * sum((t - mean_t) * (v - mean_v) for t, v in points) / spread if spread else 0.0


@dataclass
class Fleet:
    """The processes under test: their pids by label (API replicas include their workers)."""

    bench: BenchEnv
    apis: list[ApiServer]
    dispatchers: list[int]

    def processes(self) -> dict[str, int]:
        found = {}
        for n, api in enumerate(self.apis):
            for k, pid in enumerate(process_tree(api.process.pid)):
                found[f"api{n} {'supervisor' if k == 0 else f'worker{k}'}"] = pid
            api.check_alive()
        found |= {f"dispatcher{n}": pid for n, pid in enumerate(self.dispatchers)}
        pg = postgres_pids(self.bench)
        found |= {"postgres postmaster": pg[0]}
        assert self.bench.redis_server.process is not None
        found["redis"] = self.bench.redis_server.process.pid
        return found


@contextlib.contextmanager
def replicas(bench: BenchEnv, token: str) -> Iterator[list[ApiServer]]:
    """REPLICAS `caracal api` processes on their own ports, sharing the database and one admin token."""
    servers = []
    try:
        for n in range(REPLICAS):
            port = free_port()
            env = {**bench.env, **NO_LIMITS, "PORT": str(port), "CARACAL_ADMIN_TOKEN": token}
            env["CARACAL_API_WORKERS"] = os.environ.get("CARACAL_API_WORKERS", "1")
            log_path = bench.workdir / f"api{n}.log"
            with log_path.open("wb") as log_file:
                process = subprocess.Popen(
                    API_COMMAND, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
                )
            servers.append(ApiServer(process=process, log_path=log_path, port=port, token=token))
            say(f"api{n}: pid {process.pid}, port {port}, {env['CARACAL_API_WORKERS']} worker(s)")
        yield servers
    finally:
        for n, server in enumerate(servers):
            say(f"api{n}: stopped (exit code {server.stop()})")


async def _ready(servers: list[ApiServer]) -> None:
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient(timeout=2.0) as client:
        for server in servers:
            while True:
                server.check_alive()
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get(f"{server.url}/ready")).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise BenchError(f"{server.url} not ready:\n{server.log_tail()}")
                await asyncio.sleep(0.1)


@dataclass(frozen=True)
class Plan:
    seconds: float
    rate: float | None = None  # requests/s in total; None: `percent` of the measured capacity
    percent: float = 80.0
    calls_path: Path | None = None  # SOAK_CALLS: every measured call as CSV, to line tails up with logs


@dataclass
class Outcome:
    lines: list[str]
    failures: list[str]  # 5xx, lost or repeated events, memory growth: the run failed
    p99_misses: list[str]  # a kind's p99 above its request-path goal
    requests: int = 0  # sent during the measured seconds


async def run_soak(plan: Plan) -> Outcome:
    async with bench_env() as bench:
        # the stream key the total-queue checker verifies with; streams long enough to keep every entry
        env = {**bench.env, "STREAMS_HMAC_KEY": HMAC_KEY_HEX, "CARACAL_OUTBOX_STREAM_MAXLEN": str(10**9)}
        bench = dataclasses.replace(bench, env=env)
        token = secrets.token_urlsafe(32)
        with contextlib.ExitStack() as stack:
            dispatchers = [
                stack.enter_context(running_dispatcher(bench, f"d{n}")) for n in range(DISPATCHERS)
            ]
            apis = stack.enter_context(replicas(bench, token))
            await _ready(apis)
            fleet = Fleet(bench, apis, [d.pid for d in dispatchers])
            urls = [a.url for a in apis]
            probe, capacity = await _probe(urls, token) if plan.rate is None else (None, 0.0)
            rate = plan.rate or capacity * plan.percent / 100
            traffic = Traffic(urls, token, connections=CONNECTIONS, rate=rate)
            memory, began = await _drive(fleet, traffic, plan.seconds)
        every = [*(probe.calls if probe else []), *traffic.calls]
        if plan.calls_path is not None:
            _write_calls(plan.calls_path, traffic.since(began))
        return await _judge(bench, every, traffic.since(began), memory, plan.seconds)


def _write_calls(path: Path, calls: list[Call]) -> None:
    """One line per call: wall-clock time it was sent (s), latency (ms), kind, status."""
    to_wall = time.time() - time.monotonic()
    with path.open("w") as out:
        out.write("sent_unix_s,ms,kind,status\n")
        out.writelines(f"{c.began + to_wall:.4f},{c.ms:.2f},{c.kind},{c.status}\n" for c in calls)
    say(f"soak: {len(calls):,} calls written to {path}")


async def _probe(urls: list[str], token: str) -> tuple[Traffic, float]:
    """Closed loop at CONNECTIONS for PROBE_S: what the system (and this load generator) sustains,
    counted over the last PROBE_COUNTED_S (requests answered as expected per second)."""
    probe = Traffic(urls, token, connections=CONNECTIONS)
    probe.start()
    counted_from = time.monotonic() + PROBE_S - PROBE_COUNTED_S
    say(f"capacity: closed loop at {CONNECTIONS} connections for {PROBE_S:.0f} s; its end counts")
    await asyncio.sleep(PROBE_S)
    await probe.stop()
    counted = [c for c in probe.calls if c.ok and c.ended >= counted_from]
    capacity = len(counted) / PROBE_COUNTED_S
    first = sum(c.ok and c.ended < counted_from for c in probe.calls) / (PROBE_S - PROBE_COUNTED_S)
    say(f"capacity: {capacity:,.0f} requests/s (the first {PROBE_S - PROBE_COUNTED_S:.0f} s: {first:,.0f}/s)")
    return probe, capacity


async def _drive(fleet: Fleet, traffic: Traffic, seconds: float) -> tuple[Memory, float]:
    """The soak itself: WARMUP_S, then `seconds` with memory sampled and progress printed."""
    say(f"soak: {traffic.rate:,.0f} requests/s for {seconds:g} s after {WARMUP_S:g} s of warm-up,")
    say(f"  {CONNECTIONS} connections round robin over {REPLICAS} replicas, {DISPATCHERS} dispatchers")
    memory = Memory()
    traffic.start()
    try:
        await asyncio.sleep(WARMUP_S)
        began = last_print = time.monotonic()
        while (now := time.monotonic()) < began + seconds:
            # this generator keeps every call for the verdict: frozen, they are not walked again by its
            # collector's full passes (200k calls took a pass long enough to add to every latency in flight)
            gc.freeze()
            memory.sample(fleet.processes())
            if now - last_print >= PRINT_EVERY_S:
                await _progress(fleet, traffic, memory, began, last_print)
                last_print = now
            await asyncio.sleep(min(SAMPLE_EVERY_S, began + seconds - now))
        memory.sample(fleet.processes())
    finally:
        await traffic.stop()
    return memory, began


async def _progress(fleet: Fleet, traffic: Traffic, memory: Memory, began: float, since: float) -> None:
    window = traffic.since(since)
    figures = latency_figures(window)
    p99 = ", ".join(f"{kind} {f[2]:.1f}" for kind, f in figures.items())
    errors = traffic.failed
    rss = ", ".join(f"{label} {points[-1][1]:.0f}" for label, points in sorted(memory.samples.items()))
    backlog = await undelivered(fleet.bench.database_url)
    say(
        f"[{time.monotonic() - began:5.0f} s] {len(window) / (time.monotonic() - since):,.0f}/s;"
        f" p99 ms {p99}; 5xx/no answer so far {errors}; undelivered {backlog}"
    )
    say(f"  RSS MiB: {rss}")


async def _judge(
    bench: BenchEnv, every: list[Call], measured: list[Call], memory: Memory, seconds: float
) -> Outcome:
    """The figures of the run and what failed: answers, delivery (after the backlog drains), memory."""
    lines = [f"traffic: {len(measured):,} requests in {seconds:g} s ({len(measured) / seconds:,.1f}/s)"]
    misses = []
    for kind, (count, p50, p99) in latency_figures(measured).items():
        goal = P99_GOALS_MS.get(kind)
        met = "" if goal is None else f" (goal <= {goal:.0f} ms: {'met' if p99 <= goal else 'NOT met'})"
        lines.append(f"  {kind}: {count:,} answered, p50 {p50:.2f} ms, p99 {p99:.2f} ms{met}")
        if goal is not None and p99 > goal:
            misses.append(f"{kind} p99 {p99:.2f} ms > {goal:.0f} ms")
    lines.append("inside the API (its access log: from the request read to the response written):")
    inside = server_side_figures(bench.workdir.glob("api*.log"), _wall_span(measured))
    lines += [f"  {kind}: p50 {p50:.2f} ms, p99 {p99:.2f} ms" for kind, (_, p50, p99) in inside.items()]
    lines.append(f"answers (probe, warm-up and soak): {dict(sorted(statuses(every).items()))}")
    failures = [f"{len(bad)} {what}" for what, bad in _bad_answers(every).items() if bad]
    drained = await _drain(bench)
    verdict, missing = await delivery_verdict(bench.database_url, bench.redis_url, every)
    lines.append(f"delivery (drained {drained:.1f} s after the traffic stopped): {verdict.report()}")
    if not verdict.ok:
        failures.append(f"delivery: {verdict.report()}")
    if missing:
        failures.append(f"acknowledged writes without their event: {missing[:5]}")
    lines += ["memory (RSS from the end of warm-up):", *(f"  {line}" for line in memory.lines())]
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    lines.append(f"load average at the end: {load} on {os.cpu_count()} cores (shared with the run)")
    failures += memory.grown(("api", "dispatcher"))
    return Outcome(lines, failures, misses, len(measured))


def _wall_span(calls: list[Call]) -> tuple[float, float]:
    """The wall-clock seconds from the first call sent to the last answered (the access log's clock)."""
    to_wall = time.time() - time.monotonic()
    began = min((c.began for c in calls), default=0.0)
    ended = max((c.ended for c in calls), default=0.0)
    return began + to_wall, ended + to_wall


# the access line's message: "GET /v1/zones/{zone_id} 200 1.8 ms" (the route's template, not the path)
ACCESS_KINDS = {
    ("GET", "/v1/zones/{zone_id}"): "get",
    ("GET", "/v1/zones"): "list",
    ("POST", "/v1/zones"): "post",
    ("PATCH", "/v1/zones/{zone_id}"): "patch",
    ("DELETE", "/v1/zones/{zone_id}"): "delete",
}


def server_side_figures(
    logs: Iterable[Path], span: tuple[float, float]
) -> dict[str, tuple[int, float, float]]:
    """Per kind, from the API's JSON access lines logged within `span` (wall clock): count, p50, p99
    in ms. Set against the load generator's figures, the difference is what the request spent
    outside the handler: in the generator, in the kernel's queues, waiting for a core."""
    timings: dict[str, list[float]] = {}
    for path in logs:
        with path.open(errors="replace") as lines:
            for line in lines:
                if '"caracal.api.access"' not in line:
                    continue
                entry = json.loads(line)
                request, ms, _unit = str(entry["message"]).rsplit(" ", 2)
                method, _, route = request.rpartition(" ")[0].partition(" ")
                kind = ACCESS_KINDS.get((method, route))
                logged = datetime.fromisoformat(entry["time"].replace("Z", "+00:00")).timestamp()
                if kind is not None and span[0] <= logged <= span[1] + 1:
                    timings.setdefault(kind, []).append(float(ms))
    return figures_by_kind(timings)


def _bad_answers(calls: list[Call]) -> dict[str, list[Call]]:
    return {
        "answers 5xx": [c for c in calls if c.status >= 500],
        "requests without an answer": [c for c in calls if not c.status],
        "unexpected 4xx": [c for c in calls if 0 < c.status < 500 and c.status != EXPECTED[c.kind]],
    }


async def _drain(bench: BenchEnv) -> float:
    started = time.monotonic()
    while await undelivered(bench.database_url):
        if time.monotonic() - started > DRAIN_WITHIN_S:
            raise BenchError(f"events still undelivered {DRAIN_WITHIN_S:g} s after the traffic stopped")
        await asyncio.sleep(0.2)
    return time.monotonic() - started


def plan_from_env(env: dict[str, str]) -> Plan:
    """SOAK_SECONDS (600), SOAK_RATE (requests/s; unset: SOAK_PERCENT, 80, of the measured capacity),
    SOAK_CALLS (a CSV file for every measured call)."""
    rate = env.get("SOAK_RATE")
    calls = env.get("SOAK_CALLS")
    return Plan(
        float(env.get("SOAK_SECONDS", "600")),
        float(rate) if rate else None,
        float(env.get("SOAK_PERCENT", "80")),
        Path(calls) if calls else None,
    )


def main() -> int:
    plan = plan_from_env(dict(os.environ))
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    say(f"soak: {plan}; load average {load} on {os.cpu_count()} cores (the figures share them)")
    outcome = asyncio.run(run_soak(plan))
    print("\n===== soak =====", *outcome.lines, sep="\n", flush=True)
    for problem in [*outcome.failures, *outcome.p99_misses]:
        print(f"FAILED: {problem}", flush=True)
    return 1 if outcome.failures or outcome.p99_misses else 0


if __name__ == "__main__":
    sys.exit(main())
