"""API request path: wrk against `python -m caracal_api`, each route beside a raw asyncpg baseline."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import asyncpg
import httpx

from bench.common import (
    BenchEnv,
    BenchError,
    BenchProcess,
    CpuMeter,
    Sampler,
    percentile,
    process_sampler,
    ratio,
    sample_cpu,
    say,
    server_samplers,
)
from caracal.db.engine import plain_url

API_COMMAND = [sys.executable, "-m", "caracal_api"]
# the reaper seals the admin audit chain (every second): the POST figures are with the chain on
REAPER_COMMAND = [sys.executable, "-m", "caracal_reaper"]
AUDIT_STATE = (
    "SELECT count(chain_seq) AS sealed, count(*) - count(chain_seq) AS waiting FROM admin_audit_events"
)
WRK_DIR = Path(__file__).parent / "wrk"
WRK_HINT = "wrk is missing: apt-get install -y wrk (Debian's package)"
THREADS = 2  # wrk threads; the load generator shares the machine's 2 cores with the API and Postgres
CONNECTIONS = 32
POOL_SIZE = 16  # the baselines' asyncpg pool, CONNECTIONS callers sharing it
WARMUP_S = 2
DURATION_S = 8
HEALTH_DURATION_S = 4
BASELINE_DURATION_S = 4.0
LIST_LIMIT = 200
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
# what the operator's environment must not change for the run: no limit may turn load into 429s
NO_LIMITS = {
    "API_V1_RATE_LIMIT_PER_MIN": "0",
    "READY_RATE_LIMIT_PER_MIN": "0",
    "ADMIN_AUTH_FAIL_LIMIT_PER_MIN": "0",
}
ZONE_COLUMNS = "id, name, slug, dcr_enabled, created_at, updated_at"
SELECT_ZONE = f"SELECT {ZONE_COLUMNS} FROM zones WHERE id = $1 AND archived_at IS NULL"
SELECT_PAGE = (
    f"SELECT {ZONE_COLUMNS} FROM zones WHERE archived_at IS NULL ORDER BY created_at DESC, id DESC LIMIT $1"
)
INSERT_ZONE = "INSERT INTO zones (id, name, slug, dek_ciphertext, kek_arn) VALUES ($1, $2, $2, $3, 'bench1')"
INSERT_EVENT = "INSERT INTO event_outbox (id, stream_name, payload_json) VALUES ($1, 'caracal.changes', $2)"


@dataclass(frozen=True)
class Load:
    """What one closed-loop run achieved."""

    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int = 0
    cpu_ms: dict[str, float] = field(default_factory=dict)  # CPU per request, by group of processes

    @property
    def rate(self) -> float:
        """Successful requests a second: an error answered fast is no throughput."""
        return (self.requests - self.errors) / self.seconds if self.seconds > 0 else 0.0

    def describe(self) -> str:
        errors = (
            f", {self.errors:,} of {self.requests:,} failed (non-2xx/3xx or socket)" if self.errors else ""
        )
        cpu = ", ".join(f"{name} {ms:.2f} ms" for name, ms in self.cpu_ms.items())
        cpu = f"; CPU per request: {cpu}" if cpu else ""
        return f"{self.rate:,.0f}/s, p50 {self.p50_ms:.2f} ms, p99 {self.p99_ms:.2f} ms{errors}{cpu}"

    def with_cpu(self, percent: dict[str, float]) -> Load:
        """CPU per request from a CpuMeter's % of one core over the run."""
        rate = self.requests / self.seconds if self.seconds > 0 else 0.0
        return replace(self, cpu_ms={k: 10 * v / rate for k, v in percent.items()} if rate else {})


@dataclass(frozen=True)
class Goal:
    name: str
    baseline: str
    min_ratio: float
    max_p99_ms: float | None = None

    def lines(self, api: Load, base: Load) -> list[str]:
        met = "met" if base.rate > 0 and api.rate / base.rate >= self.min_ratio else "NOT met"
        if api.errors:
            met = "NOT met: requests failed"
        p99 = ""
        if self.max_p99_ms is not None:
            p99_met = "met" if api.p99_ms <= self.max_p99_ms else "NOT met"
            p99 = f"; p99 goal <= {self.max_p99_ms:.0f} ms: {p99_met}"
        return [
            f"{self.name}: {api.describe()}",
            f"  {self.baseline}: {base.describe()}",
            f"  ratio {ratio(api.rate, base.rate)} (goal >= {self.min_ratio}: {met}){p99}",
        ]


GET_ONE = Goal("GET /v1/zones/{id}", "B_sel raw asyncpg PK SELECT", 0.5, 25)
CREATE = Goal("POST /v1/zones", "B_tx raw asyncpg BEGIN; 2 INSERT; COMMIT", 0.6, 50)
LIST_PAGE = Goal(f"GET /v1/zones?limit={LIST_LIMIT}", f"raw asyncpg fetch of the same {LIST_LIMIT} rows", 0.3)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class ApiServer(BenchProcess):
    """A `python -m caracal_api` process (and whatever workers it forks), in its own process group."""

    port: int
    token: str

    @property
    def label(self) -> str:
        return "the API"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def kill(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)  # its own group: only the API and its workers


def process_tree(root: int) -> list[int]:
    """The API process and its descendants (its worker processes, however it starts them)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat[stat.rindex(")") + 2 :].split()[1])
    found, frontier = [root], [root]
    while frontier:
        frontier = [pid for pid, parent in parents.items() if parent in frontier]
        found += frontier
    return found


def api_sampler(server: ApiServer) -> Sampler:
    return lambda: sample_cpu(process_tree(server.process.pid))


def api_env(bench: BenchEnv, port: int, token: str) -> dict[str, str]:
    """The bench's servers, rate limits off, an admin token; CARACAL_API_WORKERS as the caller set it."""
    env = {**bench.env, "PORT": str(port), "CARACAL_ADMIN_TOKEN": token, **NO_LIMITS}
    workers = os.environ.get("CARACAL_API_WORKERS")  # bench.env drops CARACAL_* of the caller's env
    if workers:
        env["CARACAL_API_WORKERS"] = workers
    return env


async def _wait_ready(server: ApiServer) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    async with httpx.AsyncClient(base_url=server.url, timeout=2.0) as client:
        while time.monotonic() < deadline:
            server.check_alive()
            with contextlib.suppress(httpx.TransportError):
                if (await client.get("/ready")).status_code == 200:
                    return
            await asyncio.sleep(0.1)
    raise BenchError(f"the API was not ready in {READY_TIMEOUT_S:.0f} s:\n{server.log_tail()}")


def spawn_api(bench: BenchEnv) -> ApiServer:
    port, token = _free_port(), secrets.token_urlsafe(32)
    log_path = bench.workdir / "api.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            API_COMMAND,
            env=api_env(bench, port, token),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return ApiServer(process=process, log_path=log_path, port=port, token=token)


def spawn_bare_route(bench: BenchEnv, workers: str) -> ApiServer:
    port = _free_port()
    env = {**bench.env, "PORT": str(port), "BARE_WORKERS": workers, "BARE_POOL": str(POOL_SIZE // 2)}
    log_path = bench.workdir / "bare-route.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.bare_route"],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return ApiServer(process=process, log_path=log_path, port=port, token="unused")


def spawn_reaper(bench: BenchEnv) -> BenchProcess:
    log_path = bench.workdir / "reaper.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(REAPER_COMMAND, env=bench.env, stdout=log_file, stderr=subprocess.STDOUT)
    return BenchProcess(process=process, log_path=log_path)


async def audit_chain_state(bench: BenchEnv) -> str:
    conn = await bench.connect()
    try:
        row = await conn.fetchrow(AUDIT_STATE)
    finally:
        await conn.close()
    return f"{row['sealed']:,} audit rows sealed, {row['waiting']:,} waiting"


@contextlib.asynccontextmanager
async def running_reaper(bench: BenchEnv) -> AsyncIterator[BenchProcess]:
    reaper = spawn_reaper(bench)
    say(f"reaper: started `python -m caracal_reaper` (the audit sealer), pid {reaper.pid}")
    try:
        yield reaper
    finally:
        say(f"reaper: stopped (exit code {reaper.stop()})")


@contextlib.asynccontextmanager
async def running_api(bench: BenchEnv) -> AsyncIterator[ApiServer]:
    server = spawn_api(bench)
    workers = os.environ.get("CARACAL_API_WORKERS", "the API's default")
    say(f"api: started `python -m caracal_api`, pid {server.process.pid}, port {server.port}")
    say(f"api: CARACAL_API_WORKERS: {workers}")
    try:
        started = time.monotonic()
        await _wait_ready(server)
        say(f"api: /ready answered 200 after {time.monotonic() - started:.1f} s")
        yield server
    finally:
        say(f"api: stopped (exit code {server.stop()})")


def _wrk_script(bench: BenchEnv, name: str | None) -> Path:
    """The request script (if any) followed by the shared done() hook that prints WRK_RESULT."""
    parts = [(WRK_DIR / f"{name}.lua").read_text()] if name else []
    path = bench.workdir / f"wrk-{name or 'plain'}.lua"
    path.write_text("\n".join([*parts, (WRK_DIR / "report.lua").read_text()]))
    return path


def parse_wrk(output: str) -> Load:
    """The WRK_RESULT line of report.lua: requests, duration, errors and latencies in microseconds."""
    for line in output.splitlines():
        if line.startswith("WRK_RESULT "):
            requests, duration_us, sock_errors, status_errors, p50_us, p99_us = map(int, line.split()[1:])
            return Load(requests, duration_us / 1e6, p50_us / 1e3, p99_us / 1e3, sock_errors + status_errors)
    raise BenchError(f"wrk printed no WRK_RESULT line:\n{output[-2000:]}")


async def wrk(
    bench: BenchEnv,
    server: ApiServer,
    path: str,
    seconds: float,
    script: str | None = None,
    script_args: Sequence[str] = (),
) -> Load:
    headers = [*server.auth.items(), ("Content-Type", "application/json")]
    command = ["wrk", f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{seconds:g}s", "--timeout", "5s"]
    command += [arg for key, value in headers for arg in ("-H", f"{key}: {value}")]
    command += ["-s", str(_wrk_script(bench, script)), server.url + path, "--", secrets.token_hex(4)]
    command += script_args
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await process.communicate()
    server.check_alive()
    if process.returncode != 0:
        raise BenchError(f"wrk exited with {process.returncode}:\n{output.decode(errors='replace')}")
    return parse_wrk(output.decode(errors="replace"))


async def measure_route(
    bench: BenchEnv,
    server: ApiServer,
    label: str,
    path: str,
    script: str | None = None,
    seconds: float = 0,
    script_args: Sequence[str] = (),
) -> Load:
    """A warm-up run, thrown away, then the measured one; a run that mostly failed is no figure."""
    seconds = seconds or DURATION_S
    say(f"{label}: warming up {WARMUP_S} s, then wrk -t{THREADS} -c{CONNECTIONS} for {seconds:g} s")
    await wrk(bench, server, path, WARMUP_S, script, script_args)
    meter = CpuMeter({"api": api_sampler(server), "postgres": server_samplers(bench)["postgres"]})
    async with profiled(server, label, seconds):
        meter.start()
        found = await wrk(bench, server, path, seconds, script, script_args)
        found = found.with_cpu(meter.percent())
    say(f"{label}: {found.describe()}")
    if found.errors > found.requests / 2:
        raise BenchError(f"{label}: {found.errors} of {found.requests} requests failed\n{server.log_tail()}")
    return found


@contextlib.asynccontextmanager
async def profiled(server: ApiServer, label: str, seconds: float) -> AsyncIterator[None]:
    """With BENCH_API_PROFILE=<dir>: py-spy samples the API (and its workers) while the block runs."""
    folder = os.environ.get("BENCH_API_PROFILE")
    if not folder:
        yield
        return
    out = Path(folder) / (re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-") + ".txt")
    out.parent.mkdir(parents=True, exist_ok=True)
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))  # the dev extra's
    command = [py_spy, "record", "--nonblocking", "--subprocesses", "-r", "250", "-f", "raw"]
    command += ["-d", f"{seconds:g}", "-p", str(server.process.pid), "-o", str(out)]
    spy = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    try:
        yield
    finally:
        await spy.wait()
        say(f"{label}: py-spy profile (collapsed stacks) in {out}")


async def drive(callers: int, seconds: float, call: Callable[[int], Awaitable[object]]) -> Load:
    """`callers` tasks calling call(n) back to back for `seconds`; latency of every call."""
    latencies: list[float] = []
    stop_at = time.perf_counter() + seconds

    async def caller(index: int) -> None:
        n = index
        while (started := time.perf_counter()) < stop_at:
            await call(n)
            latencies.append(time.perf_counter() - started)
            n += callers

    began = time.perf_counter()
    await asyncio.gather(*(caller(i) for i in range(callers)))
    elapsed = time.perf_counter() - began
    latencies.sort()
    if not latencies:
        raise BenchError("the baseline made no call")
    return Load(len(latencies), elapsed, percentile(latencies, 50) * 1e3, percentile(latencies, 99) * 1e3)


PoolCall = Callable[[asyncpg.Pool, int], Awaitable[object]]


async def baseline(bench: BenchEnv, label: str, call: PoolCall) -> Load:
    """`call` on a raw asyncpg pool of POOL_SIZE from CONNECTIONS callers: 1 s warm-up, then measured."""
    say(f"{label}: pool {POOL_SIZE}, {CONNECTIONS} callers, {BASELINE_DURATION_S:g} s (after 1 s warm-up)")
    pool = await asyncpg.create_pool(plain_url(bench.database_url), min_size=POOL_SIZE, max_size=POOL_SIZE)
    try:
        await drive(CONNECTIONS, 1.0, lambda n: call(pool, -n - 1))
        meter = CpuMeter(
            {"client": process_sampler(os.getpid()), "postgres": server_samplers(bench)["postgres"]}
        )
        meter.start()
        found = await drive(CONNECTIONS, BASELINE_DURATION_S, lambda n: call(pool, n))
        found = found.with_cpu(meter.percent())
    finally:
        await pool.close()
    say(f"{label}: {found.describe()}")
    return found


def _insert_pair(tag: str) -> PoolCall:
    """B_tx: a zone row and its outbox row in one transaction, names unique per run and call."""
    dek = secrets.token_bytes(60)

    async def call(pool: asyncpg.Pool, n: int) -> None:
        zone_id = f"bench-{tag}-{n}"
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(INSERT_ZONE, zone_id, zone_id, dek)
            await conn.execute(INSERT_EVENT, zone_id, f'{{"event":"zone.created","zone_id":"{zone_id}"}}')

    return call


async def create_zone(server: ApiServer, name: str) -> str:
    async with httpx.AsyncClient(base_url=server.url, headers=server.auth, timeout=10.0) as client:
        response = await client.post("/v1/zones", json={"name": name})
    if response.status_code != 201:
        raise BenchError(f"POST /v1/zones answered {response.status_code}: {response.text[:500]}")
    zone_id: str = response.json()["id"]
    return zone_id


async def live_zones(bench: BenchEnv) -> int:
    conn = await bench.connect()
    try:
        found: int = await conn.fetchval("SELECT count(*) FROM zones WHERE archived_at IS NULL")
        return found
    finally:
        await conn.close()


async def _get_one(bench: BenchEnv, server: ApiServer) -> list[str]:
    zone_id = await create_zone(server, f"bench-get-{secrets.token_hex(4)}")
    api = await measure_route(bench, server, "GET one zone", f"/v1/zones/{zone_id}")
    label = "B_sel (raw PK SELECT)"
    base = await baseline(bench, label, lambda pool, _n: pool.fetchrow(SELECT_ZONE, zone_id))
    async with running_bare_route(bench) as bare_server:
        bare = await measure_route(bench, bare_server, "bare route", f"/zones/{zone_id}")
    return [
        *GET_ONE.lines(api, base),
        f"  {BARE_LABEL}: {bare.describe()}",
        f"  its ratio to B_sel {ratio(bare.rate, base.rate)};"
        f" GET one zone / bare route {ratio(api.rate, bare.rate)}",
    ]


BARE_LABEL = "bare Litestar route, one asyncpg SELECT, same server and workers (bench/bare_route.py)"


@contextlib.asynccontextmanager
async def running_bare_route(bench: BenchEnv) -> AsyncIterator[ApiServer]:
    """bench/bare_route.py with as many uvicorn workers as the API has (default: the core count)."""
    workers = os.environ.get("CARACAL_API_WORKERS") or str(os.cpu_count() or 1)
    server = spawn_bare_route(bench, workers)
    say(f"bare route: started `python -m bench.bare_route` ({workers} workers), pid {server.pid}")
    try:
        await _wait_ready(server)
        yield server
    finally:
        say(f"bare route: stopped (exit code {server.stop()})")


async def _create(bench: BenchEnv, server: ApiServer) -> list[str]:
    api = await measure_route(bench, server, "POST /v1/zones", "/v1/zones", "post_zones")
    chain = f"audit chain right after the run: {await audit_chain_state(bench)}"
    say(chain)
    base = await baseline(bench, "B_tx (raw BEGIN; 2 INSERT; COMMIT)", _insert_pair(secrets.token_hex(4)))
    chain_later = f"audit chain after the baseline: {await audit_chain_state(bench)}"
    return [*CREATE.lines(api, base), f"  {chain}", f"  {chain_later}"]


async def _list_page(bench: BenchEnv, server: ApiServer) -> list[str]:
    live = await live_zones(bench)
    if live < LIST_LIMIT:  # the POST run leaves thousands; this only guards a run of the list alone
        raise BenchError(f"only {live} live zones; the list page needs {LIST_LIMIT}")
    path = f"/v1/zones?limit={LIST_LIMIT}"
    api = await measure_route(bench, server, f"GET a {LIST_LIMIT}-zone page", path)
    label = f"raw fetch of {LIST_LIMIT} rows"
    base = await baseline(bench, label, lambda pool, _n: pool.fetch(SELECT_PAGE, LIST_LIMIT))
    return LIST_PAGE.lines(api, base)


async def run(bench: BenchEnv) -> list[str]:
    if shutil.which("wrk") is None:
        raise BenchError(WRK_HINT)
    say(f"api: each route under wrk at {CONNECTIONS} connections, then its raw asyncpg baseline")
    say(f"api: load average before: {_load()} (the figures share {os.cpu_count()} cores with it)")
    async with running_reaper(bench) as reaper, running_api(bench) as server:
        health = await measure_route(bench, server, "GET /health", "/health", seconds=HEALTH_DURATION_S)
        lines = [f"GET /health (framework ceiling, reference): {health.describe()}"]
        lines += await _get_one(bench, server)
        lines += await _create(bench, server)
        lines += await _list_page(bench, server)
        reaper.check_alive()
    lines.append(f"load average after: {_load()} on {os.cpu_count()} cores")
    for line in lines:
        say(line)
    return lines


def _load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())
