"""The `caracal` command: each service as a process by module name, `migrate`, and `up` for development."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from caracal.settings import Settings, SettingsError, load_settings

SERVICES = {"api": "caracal_api", "dispatcher": "caracal_dispatcher", "reaper": "caracal_reaper"}
COMMANDS = (*SERVICES, "migrate", "up", "audit", "keys", "status")
# the commands that take a subcommand, each with the module function that runs it
SUBCOMMANDS = {
    "audit": {
        "verify": "caracal.audit_verify:verify_main",
        "rotate-key": "caracal.audit_keys:rotate_key_main",
    },
    "keys": {
        "rotate-kek": "caracal.key_rotation:rotate_kek_main",
        "rotate-zone-kek": "caracal.key_rotation:rotate_zone_kek_main",
        "streams-drained": "caracal.stream_keys:streams_drained_main",
    },
}
GENERATED_SECRETS = (
    "CARACAL_KEK",
    "STREAMS_HMAC_KEY",
    "AUDIT_HMAC_KEY",
    "CARACAL_ADMIN_TOKEN",
    "ZONE_KEK",
    "CARACAL_BUNDLE_SIGNING_KEY",
)


TAIL_LINES = 8  # a dead child's last lines, repeated after the news of its exit


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="caracal", description="Caracal control plane")
    parser.add_argument("command", choices=COMMANDS)
    parser.add_argument(
        "subcommand",
        nargs="?",
        help="; ".join(f"{command}: {', '.join(known)}" for command, known in SUBCOMMANDS.items()),
    )
    parser.add_argument("--json", action="store_true", help="status: the facts as one JSON object")
    args = parser.parse_args(argv)
    if args.command in SUBCOMMANDS:
        return _run_subcommand(parser, args.command, args.subcommand)
    if args.subcommand is not None:
        parser.error(f"`caracal {args.command}` takes no subcommand")
    if args.command in SERVICES:
        module = SERVICES[args.command]
        os.execv(sys.executable, [sys.executable, "-m", module])  # noqa: S606 - replaces this process
    if args.command == "migrate":
        return _migrate()
    if args.command == "status":
        from caracal.status import status_main  # noqa: PLC0415

        return status_main(as_json=args.json)
    return run_up()


def _run_subcommand(parser: argparse.ArgumentParser, command: str, subcommand: str | None) -> int:
    known = SUBCOMMANDS[command]
    if subcommand not in known:
        parser.error(f"`caracal {command}` takes one of: {', '.join(known)}")
    module, _, function = known[subcommand].partition(":")
    run: Callable[[], int] = getattr(importlib.import_module(module), function)  # keeps start-up light
    return run()


def settings_or_exit(env: dict[str, str] | None = None) -> Settings:
    """Load settings; a bad value stops the process with one line naming the variable."""
    try:
        return load_settings(env)
    except SettingsError as exc:
        print(f"caracal: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _migrate() -> int:
    from caracal.db.engine import create_engine  # noqa: PLC0415 - keeps `caracal api` start-up light
    from caracal.db.migrate import run_migrations  # noqa: PLC0415
    from caracal.telemetry import configure_logging  # noqa: PLC0415

    settings = settings_or_exit()
    configure_logging(settings.log_level, "migrate", settings.log_format)
    settings.require_servers()

    async def go() -> list[str]:
        engine = create_engine(settings, pool_size=1)
        try:
            return await run_migrations(engine)
        finally:
            await engine.dispose()

    applied = asyncio.run(go())
    say(f"migrations applied: {', '.join(applied)}" if applied else "schema already at head")
    return 0


def _secrets_file(data_dir: Path) -> tuple[dict[str, str], set[str]]:
    path = data_dir / "secrets.env"
    stored: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            name, sep, value = line.partition("=")
            if sep:
                stored[name.strip()] = value.strip()
    fresh = {
        "CARACAL_KEK": f"local1:{secrets.token_hex(32)}",
        "STREAMS_HMAC_KEY": secrets.token_hex(32),
        "AUDIT_HMAC_KEY": secrets.token_hex(32),
        "CARACAL_ADMIN_TOKEN": "cat_" + secrets.token_urlsafe(32),
        "ZONE_KEK": secrets.token_hex(32),
        "CARACAL_BUNDLE_SIGNING_KEY": secrets.token_hex(32),
    }
    generated = {name for name in GENERATED_SECRETS if name not in stored}
    for name in generated:
        stored[name] = fresh[name]
    if generated:
        path.write_text("".join(f"{k}={v}\n" for k, v in stored.items()))
        path.chmod(0o600)
    return stored, generated


def _prepare_env(data_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("LOG_FORMAT", "text")  # a person reads `caracal up` at a terminal
    stored, generated = _secrets_file(data_dir)
    for name in GENERATED_SECRETS:
        if env.get(name) or env.get(f"{name}_FILE"):
            say(f"{name}: taken from the environment")
        else:
            env[name] = stored[name]
            verb = "generated into" if name in generated else "read from"
            say(f"{name}: {verb} {data_dir / 'secrets.env'}")
    return env


def run_up() -> int:
    from caracal.embedded import EmbeddedPostgres, EmbeddedRedis  # noqa: PLC0415

    data_dir = Path(os.environ.get("CARACAL_DATA_DIR", ".caracal")).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    say(f"caracal up: data directory {data_dir}")
    env = _prepare_env(data_dir)
    stops: list[Callable[[], None]] = []
    try:
        if not env.get("DATABASE_URL"):
            say("starting embedded PostgreSQL 18 (set DATABASE_URL to use your own)")
            pg = EmbeddedPostgres(data_dir / "postgres")
            env["DATABASE_URL"] = pg.start()
            stops.append(pg.stop)
        if not env.get("REDIS_URL"):
            say("starting embedded Redis (set REDIS_URL to use your own)")
            redis_server = EmbeddedRedis(data_dir / "redis")
            env["REDIS_URL"] = redis_server.start()
            stops.append(redis_server.stop)
        settings = settings_or_exit(env)
        return _supervise(settings, env)
    finally:
        for stop in reversed(stops):
            stop()
        say("stopped")


@dataclass
class Child:
    """A service process of `caracal up`; its output is relayed, and its last lines kept."""

    name: str
    process: subprocess.Popen[str]
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL_LINES))
    relay: threading.Thread | None = None

    def relay_output(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            self.tail.append(line.rstrip("\n"))

    def exit_story(self) -> list[str]:
        """How it ended (exit code or signal) and, since that may not say why, its last lines."""
        if self.relay is not None:
            self.relay.join(timeout=2)  # its last lines may still be in the pipe
        lines = [f"{self.name} {describe_exit(self.process.returncode)}; stopping the rest"]
        if self.tail:
            lines.append(f"{self.name}'s last output:")
            lines.extend(f"    {line}" for line in self.tail)
        return lines


def describe_exit(returncode: int) -> str:
    """`exited with code N`, or `was killed by SIGNAME` (Popen reports a signal as -N)."""
    if returncode >= 0:
        return f"exited with code {returncode}"
    try:
        return f"was killed by {signal.Signals(-returncode).name}"
    except ValueError:
        return f"was killed by signal {-returncode}"


def _supervise(settings: Settings, env: dict[str, str]) -> int:
    children = {name: _spawn(name, module, env) for name, module in SERVICES.items()}
    stopping = False

    def request_stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        if _wait_ready(settings.port, children, lambda: stopping):
            _print_summary(settings, env)
        while not stopping:
            exited = [child for child in children.values() if child.process.poll() is not None]
            if exited:
                for line in (line for child in exited for line in child.exit_story()):
                    say(line)
                return 1
            time.sleep(0.2)
        return 0
    finally:
        say("stopping api, dispatcher and reaper")
        _terminate(children, settings.shutdown_timeout_ms / 1000 + 5)


def _spawn(name: str, module: str, env: dict[str, str]) -> Child:
    process = subprocess.Popen(
        [sys.executable, "-m", module], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    say(f"started {module} (pid {process.pid})")
    child = Child(name, process)
    child.relay = threading.Thread(target=child.relay_output, name=f"relay-{name}", daemon=True)
    child.relay.start()
    return child


def _wait_ready(port: int, children: dict[str, Child], stopping: Callable[[], bool]) -> bool:
    say("waiting for the API to become ready (migrations run first)")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not stopping():
        if any(child.process.poll() is not None for child in children.values()):
            return False
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=1) as response:
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    return False


def _terminate(children: dict[str, Child], grace: float) -> None:
    for child in children.values():
        if child.process.poll() is None:
            child.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for child in children.values():
        try:
            child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.process.kill()
            child.process.wait()


def _print_summary(settings: Settings, env: dict[str, str]) -> None:
    lines = [
        "",
        "Caracal control plane is up.",
        f"  API:          http://127.0.0.1:{settings.port}  (docs: /docs, OpenAPI: /openapi.json)",
        f"  admin token:  {env['CARACAL_ADMIN_TOKEN']}",
        f"  Postgres:     {env['DATABASE_URL']}",
        f"  Redis:        {env['REDIS_URL']}",
        "",
        f"  try: curl -H 'Authorization: Bearer {env['CARACAL_ADMIN_TOKEN']}' "
        f"http://127.0.0.1:{settings.port}/v1/zones",
        "  Ctrl-C stops everything; the data stays in the data directory for the next `make up`.",
        "",
    ]
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
