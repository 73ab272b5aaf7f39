"""The Rego worker process: answers check and evaluate requests from its parent over a socket.

Started as `python -m caracal.rego <fd> <workdir>` (caracal/rego/__main__.py): a fresh
interpreter that inherits no event loop, connection pool or thread, and (unlike multiprocessing's
spawn) never re-imports the parent's main module. It says `ready` once regopy is loaded, so the
parent's time limit covers the work, not the start.
"""

from __future__ import annotations

import logging
import os
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from caracal.rego.checks import check_module, evaluate_modules
from caracal.rego.verdicts import READY, EvaluationFailed

log = logging.getLogger("caracal.rego.worker")


def _answer(request: tuple[Any, ...], debug_dir: Path) -> tuple[str, Any]:
    try:
        if request[0] == "check":
            return "ok", check_module(request[1], debug_dir)
        if request[0] == "evaluate":
            return "ok", evaluate_modules(request[1], request[2], request[3])
        return "failed", f"unknown request {request[0]!r}"
    except EvaluationFailed as exc:
        return "failed", str(exc)
    except Exception as exc:  # a Python-level failure answers; only a crash ends the process
        log.warning("Rego request %r failed", request[0], exc_info=True)
        return "failed", f"{type(exc).__name__}: {exc}"


def serve(conn: Connection, workdir: str) -> None:
    """Answer requests until the parent closes the pipe."""
    # rego-cpp prints parse errors on stdout; they reach the parent as answers, not as log noise
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    conn.send(READY)
    debug_dir = Path(workdir) / "passes"
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return
        conn.send(_answer(request, debug_dir))
