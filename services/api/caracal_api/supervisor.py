"""CARACAL_API_WORKERS worker processes sharing one listening socket; SIGTERM drains them all.

The parent runs the migrations once, binds the port, and starts each worker as
`python -m caracal_api` with the socket's descriptor in CARACAL_API_LISTEN_FD. It forwards SIGTERM and
SIGINT, waits up to CARACAL_SHUTDOWN_TIMEOUT_MS (plus a margin) for the workers to drain, and restarts
a worker that dies on its own.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from types import FrameType
from typing import Any, cast

from prometheus_client import multiprocess

from caracal.settings import Settings

log = logging.getLogger("caracal.api.supervisor")
LISTEN_FD = "CARACAL_API_LISTEN_FD"
METRICS_DIR = "PROMETHEUS_MULTIPROC_DIR"
BACKLOG = 2048
RESTART_DELAY_S = 1.0
STOP_MARGIN_S = 5.0
POLL_S = 0.2


def listening_socket(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("0.0.0.0", port))  # noqa: S104 - PORT is served on every interface, as the contract says
    sock.listen(BACKLOG)
    sock.set_inheritable(True)
    return sock


def worker_pool_size(settings: Settings) -> int:
    """CARACAL_DB_POOL_MAX bounds the replica's connections, whatever its core count: the workers
    share it (at least 2 each, so a read and a write can always proceed)."""
    return max(2, settings.db_pool_max // settings.api_workers)


def _start_worker(
    index: int, sock: socket.socket, metrics_dir: str, pool_size: int
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        LISTEN_FD: str(sock.fileno()),
        "CARACAL_API_WORKER_INDEX": str(index),
        METRICS_DIR: metrics_dir,  # each worker writes its counters there; /metrics sums them all
        "CARACAL_DB_POOL_MAX": str(pool_size),
    }
    return subprocess.Popen([sys.executable, "-m", "caracal_api"], env=env, pass_fds=(sock.fileno(),))


def _describe_exit(code: int) -> str:
    return f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"


class Supervisor:
    def __init__(self, settings: Settings, sock: socket.socket) -> None:
        self.settings = settings
        self.sock = sock
        self.workers: dict[int, subprocess.Popen[bytes]] = {}
        self.stopping: int | None = None
        self.metrics_dir = tempfile.mkdtemp(prefix="caracal-api-metrics-")
        self.pool_size = worker_pool_size(settings)

    def on_signal(self, sig: int, _frame: FrameType | None) -> None:
        self.stopping = sig

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.on_signal)
        signal.signal(signal.SIGINT, self.on_signal)
        log.info(
            "api: %d workers, %d database connections each (CARACAL_DB_POOL_MAX=%d)",
            self.settings.api_workers,
            self.pool_size,
            self.settings.db_pool_max,
        )
        for index in range(self.settings.api_workers):
            self.workers[index] = _start_worker(index, self.sock, self.metrics_dir, self.pool_size)
        while self.stopping is None:
            time.sleep(POLL_S)
            self._restart_dead()
        return self._stop_all()

    def _restart_dead(self) -> None:
        for index, process in list(self.workers.items()):
            code = process.poll()
            if code is None or self.stopping is not None:
                continue
            log.error(
                "api worker %d (pid %d) stopped: %s; restarting", index, process.pid, _describe_exit(code)
            )
            # its pool gauges (livesum) must not count in the replica's figures any more
            cast("Any", multiprocess.mark_process_dead)(process.pid, self.metrics_dir)  # untyped upstream
            time.sleep(RESTART_DELAY_S)
            self.workers[index] = _start_worker(index, self.sock, self.metrics_dir, self.pool_size)

    def _stop_all(self) -> int:
        log.info(
            "api: %s received; draining %d worker(s)",
            signal.Signals(self.stopping or 15).name,
            len(self.workers),
        )
        # our copy of the listening socket would keep the port open after every worker closed its
        # own: connections would queue in the backlog, never accepted, and be reset at our exit
        self.sock.close()
        for process in self.workers.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.settings.shutdown_timeout_ms / 1000 + STOP_MARGIN_S
        for index, process in self.workers.items():
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("api worker %d did not drain in time; killing it", index)
                process.kill()
                process.wait()
        shutil.rmtree(self.metrics_dir, ignore_errors=True)
        log.info("api stopped")
        return 0


def supervise(settings: Settings, sock: socket.socket) -> int:
    return Supervisor(settings, sock).run()
