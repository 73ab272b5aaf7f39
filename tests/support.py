"""Real servers and real processes for the test suite: one fixture chain, shared per session."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from caracal.embedded import EmbeddedPostgres, EmbeddedRedis, free_port
from caracal.settings import Settings

HMAC_KEY_HEX = secrets.token_hex(32)
KEK = f"test1:{secrets.token_hex(32)}"
ZONE_KEK_HEX = secrets.token_hex(32)  # seals provider secrets and provider-grant tokens (caracal.sealing)
AUDIT_KEY_HEX = secrets.token_hex(32)  # chains the admin audit trail (caracal.audit_chain)
BUNDLE_KEY_HEX = secrets.token_hex(32)  # Ed25519 seed signing policy bundles
ADMIN_TOKEN = "cat_test_" + secrets.token_urlsafe(24)
# Every log a test process wrote, and every secret the suite made: tests/log_scan.py checks at the
# session's end that none of these values appears in any of these logs.
SERVICE_LOGS: list[Path] = []
SUITE_SECRETS: dict[str, str] = {
    "admin token": ADMIN_TOKEN,
    "CARACAL_KEK": KEK.partition(":")[2],
    "STREAMS_HMAC_KEY": HMAC_KEY_HEX,
    "AUDIT_HMAC_KEY": AUDIT_KEY_HEX,
    "ZONE_KEK": ZONE_KEK_HEX,
    "CARACAL_BUNDLE_SIGNING_KEY": BUNDLE_KEY_HEX,
}


def remember_secret(label: str, value: str) -> str:
    """A secret a test made (a token, a client secret): no process log may contain it."""
    SUITE_SECRETS[f"{label} #{len(SUITE_SECRETS)}"] = value
    return value


def readable(raw: str) -> str:
    """A log as a person reads it: each JSON line becomes `level logger: message` (then its exception
    text), so tests look for the message itself, not its JSON-escaped form; other lines stay as they are."""
    lines = []
    for line in raw.splitlines():
        try:
            event = json.loads(line) if line.startswith("{") else None
        except ValueError:
            event = None
        if not isinstance(event, dict) or "message" not in event:
            lines.append(line)
            continue
        lines.append(f"{event.get('level')} {event.get('logger')}: {event['message']}")
        if "exception" in event:
            lines.append(event["exception"])
    return "\n".join(lines)


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]], what: str, within: float = 10, poll: float = 0.01
) -> float:
    """Wait until `condition()` (a value or an awaitable) is true; fails naming `what` after `within`
    seconds (an assertion, so the test says what did not happen rather than timing out).
    Returns the seconds it took. The one way the tests wait for something to happen."""
    started = time.monotonic()
    while True:
        met = condition()
        if inspect.isawaitable(met):
            met = await met
        if met:
            return time.monotonic() - started
        assert time.monotonic() - started < within, f"{what}: not within {within} s"
        await asyncio.sleep(poll)


def docker_answers() -> bool:
    try:
        return (
            subprocess.run(["docker", "info"], capture_output=True, timeout=10, check=False).returncode == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


@dataclass
class Servers:
    """Where Postgres and Redis answer; `postgres`/`redis` are set when the suite controls the process."""

    postgres_url: str
    redis_url: str
    postgres: EmbeddedPostgres | None = None
    redis: EmbeddedRedis | None = None
    cleanups: list[contextlib.ExitStack] = field(default_factory=list)


@contextlib.contextmanager
def real_servers(workdir: Path) -> Iterator[Servers]:
    """DATABASE_URL/REDIS_URL when set, else testcontainers with a Docker engine, else embedded servers."""
    with contextlib.ExitStack() as stack:
        pg_url, redis_url = os.environ.get("DATABASE_URL"), os.environ.get("REDIS_URL")
        pg = rd = None
        docker = (not pg_url or not redis_url) and docker_answers()
        if not pg_url and docker:
            from testcontainers.postgres import PostgresContainer

            container = stack.enter_context(PostgresContainer("postgres:18", driver=None))
            pg_url = container.get_connection_url()
        elif not pg_url:
            pg = EmbeddedPostgres(workdir / "postgres", durable=False, database="postgres")
            pg_url = pg.start()
            stack.callback(pg.destroy)
        if not redis_url and docker:
            from testcontainers.redis import RedisContainer

            rc = stack.enter_context(RedisContainer("redis:7"))
            redis_url = f"redis://{rc.get_container_host_ip()}:{rc.get_exposed_port(6379)}/0"
        elif not redis_url:
            rd = EmbeddedRedis(workdir / "redis")
            redis_url = rd.start()
            stack.callback(rd.destroy)
        yield Servers(pg_url, redis_url, pg, rd)


def with_database(url: str, database: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{database}"


def service_env(database_url: str, redis_url: str, **overrides: str) -> dict[str, str]:
    """The environment a service process gets in tests (fast polls, no request limits)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CARACAL_", "STREAMS_", "API_"))}
    env.update(
        {
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "CARACAL_KEK": KEK,
            "STREAMS_HMAC_KEY": HMAC_KEY_HEX,
            "AUDIT_HMAC_KEY": AUDIT_KEY_HEX,
            "ZONE_KEK": ZONE_KEK_HEX,
            "CARACAL_BUNDLE_SIGNING_KEY": BUNDLE_KEY_HEX,
            "CARACAL_ADMIN_TOKEN": ADMIN_TOKEN,
            "API_V1_RATE_LIMIT_PER_MIN": "0",
            "READY_RATE_LIMIT_PER_MIN": "0",
            "CARACAL_SHUTDOWN_TIMEOUT_MS": "5000",
            "CARACAL_API_WORKERS": "1",  # tests of several workers ask for them
            "LOG_LEVEL": "info",
        }
    )
    env.update(overrides)
    return env


@dataclass
class Service:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    port: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def raw_log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log(self) -> str:
        """What the process logged, one readable line per event (see `readable`)."""
        return readable(self.raw_log())

    def events(self) -> list[dict[str, object]]:
        """Its JSON log lines, decoded (lines that are not JSON, e.g. a crash's traceback, are skipped)."""
        found = []
        for line in self.raw_log().splitlines():
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if isinstance(event, dict):
                    found.append(event)
        return found

    def wait_logged(self, text: str, timeout: float = 30) -> None:
        """Until the process has logged `text` (it fails at once if the process ends first)."""
        deadline = time.monotonic() + timeout
        while text not in self.log():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{self.name} never logged {text!r}:\n{self.log()[-3000:]}")
            time.sleep(0.05)

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 15) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


def start_service(kind: str, env: dict[str, str], logdir: Path, *, tag: str = "") -> Service:
    """Start `python -m caracal_<kind>` the way `caracal up` does; the API gets a free port."""
    env = dict(env)
    port = None
    if kind == "api":
        port = free_port()
        env["PORT"] = str(port)
    log_path = logdir / f"{kind}{tag}-{time.monotonic_ns()}.log"
    SERVICE_LOGS.append(log_path)
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", f"caracal_{kind}"], env=env, stdout=log_file, stderr=subprocess.STDOUT
        )
    return Service(kind, process, log_path, port)


def wait_ready(service: Service, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            raise AssertionError(f"{service.name} exited:\n{service.log()[-4000:]}")
        try:
            with urllib.request.urlopen(f"{service.url}/ready", timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"{service.name} not ready in {timeout}s:\n{service.log()[-4000:]}")


async def empty_database(engine: AsyncEngine, statements: str) -> None:
    """Run the statements that empty the test database (several at once: asyncpg's simple query
    protocol; the `truncate_all` fixture builds them)."""
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        await raw.driver_connection.execute(statements)  # type: ignore[union-attr]


async def run_cli(settings: Settings, *args: str, **env: str) -> tuple[int, str]:
    """`caracal <args>` as a real process on the session's servers: its exit code and output."""
    assert settings.database_url is not None and settings.redis_url is not None
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "caracal.cli",
        *args,
        env=service_env(settings.database_url, settings.redis_url, **env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 60)
    return int(process.returncode or 0), output.decode()
