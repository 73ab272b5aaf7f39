"""A few Rego worker processes behind an async API, each call within a time limit.

Why processes: regopy is a C++ library; some modules (very deep nesting) or misuse end the whole
process instead of raising, and a pathological module can run for minutes holding the GIL. A
worker that dies or overruns is killed and replaced; the caller gets an answer, the API lives on.
Calls wait on a thread per worker (never on the event loop); at most `max_pending` calls wait or
run at once per process, beyond that the answer is a fast 503 `overloaded`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from typing import Any

from caracal.errors import Overloaded
from caracal.rego.verdicts import READY

log = logging.getLogger("caracal.rego")
START_TIMEOUT_S = 60.0  # importing regopy in a fresh interpreter, on a loaded machine
STOP_TIMEOUT_S = 2.0


class WorkerLost(Exception):
    """The worker overran the time limit (killed) or died while answering."""

    def __init__(self, reason: str, *, timed_out: bool) -> None:
        super().__init__(reason)
        self.timed_out = timed_out


class _Worker:
    """One worker process and its pipe, (re)started on demand by the thread using it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.process: subprocess.Popen[bytes] | None = None
        self.conn: Connection | None = None
        self.workdir: str | None = None

    def _start(self) -> None:
        ours, theirs = socket.socketpair()
        self.workdir = tempfile.mkdtemp(prefix="caracal-rego-")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        command = [sys.executable, "-m", "caracal.rego", str(theirs.fileno()), self.workdir]
        try:
            self.process = subprocess.Popen(command, pass_fds=[theirs.fileno()], env=env)
        finally:
            theirs.close()
        self.conn = Connection(ours.detach())
        try:
            started = self.conn.poll(START_TIMEOUT_S) and self.conn.recv() == READY
        except (EOFError, OSError):
            started = False
        if not started:
            self.stop()
            raise WorkerLost("the Rego worker did not start", timed_out=False)

    def call(self, request: tuple[Any, ...], timeout_s: float) -> tuple[str, Any]:
        if self.process is None or self.process.poll() is not None:
            self.stop()
            self._start()
        assert self.conn is not None
        try:
            self.conn.send(request)
            answered = self.conn.poll(timeout_s)
            if answered:
                reply: tuple[str, Any] = self.conn.recv()
                return reply
        except (EOFError, OSError) as exc:
            self.stop()
            raise WorkerLost("the Rego interpreter stopped while working", timed_out=False) from exc
        self.stop()
        raise WorkerLost(f"the Rego interpreter took longer than {timeout_s * 1000:.0f} ms", timed_out=True)

    def stop(self) -> None:
        """Kill the process (it may be stuck in C++), reap it, drop its pipe and scratch directory."""
        process, conn, workdir = self.process, self.conn, self.workdir
        self.process = self.conn = self.workdir = None
        if conn is not None:
            conn.close()
        if process is not None:
            if process.poll() is None:
                process.kill()
            try:
                code = process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                code = None
            if code not in (0, -9):
                log.warning("Rego worker %s ended with exit code %s", self.name, code)
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)


class RegoEngine:
    """`workers` processes (started on first use), `timeout_ms` per call, `max_pending` calls."""

    def __init__(self, *, workers: int = 2, timeout_ms: int = 2000, max_pending: int = 64) -> None:
        if workers < 1 or timeout_ms < 1 or max_pending < workers:
            raise ValueError("workers and timeout_ms must be positive, max_pending at least workers")
        self.timeout_s = timeout_ms / 1000
        self.max_pending = max_pending
        self._workers = [_Worker(f"caracal-rego-{n}") for n in range(workers)]
        self._idle: queue.SimpleQueue[_Worker] = queue.SimpleQueue()
        for worker in self._workers:
            self._idle.put(worker)
        self._threads = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="caracal-rego")
        self._pending = 0
        self._lock = threading.Lock()
        self.closed = False

    def _run(self, request: tuple[Any, ...]) -> tuple[str, Any]:
        worker = self._idle.get()  # one thread per worker: never waits
        try:
            return worker.call(request, self.timeout_s)
        finally:
            self._idle.put(worker)

    async def call(self, request: tuple[Any, ...]) -> tuple[str, Any]:
        """The worker's reply; WorkerLost when it overran or died; 503 when too many wait already."""
        with self._lock:
            if self.closed:
                raise Overloaded("overloaded", "the Rego engine is shut down")
            if self._pending >= self.max_pending:
                raise Overloaded("overloaded", "too many Rego checks are waiting; retry shortly")
            self._pending += 1
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._threads, self._run, request)
        finally:
            with self._lock:
                self._pending -= 1

    @property
    def pending(self) -> int:
        """Calls waiting for or running on a worker now."""
        with self._lock:
            return self._pending

    async def check(self, content: str) -> tuple[str, Any]:
        return await self.call(("check", content))

    async def evaluate(self, modules: Mapping[str, str], value: object, query: str) -> tuple[str, Any]:
        return await self.call(("evaluate", dict(modules), value, query))

    def close(self) -> None:
        """Stop every worker; calls still queued fail (the API is shutting down)."""
        self.closed = True
        self._threads.shutdown(wait=False, cancel_futures=True)
        for worker in self._workers:
            try:
                worker.stop()
            except Exception:  # one worker's failure must not leave the others running
                log.warning("Rego worker %s did not stop cleanly", worker.name, exc_info=True)
