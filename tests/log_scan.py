"""The session's last check: no log a test process wrote contains any secret the suite made.

Imported by tests/conftest.py as an autouse session fixture: it is set up before every other
session fixture, so its teardown runs after all of them, when every process has stopped writing.
A leak fails the run (an error at the session's teardown) naming the log and the secret."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import pytest

from caracal.logs import JsonFormatter
from tests.support import SERVICE_LOGS, SUITE_SECRETS


def _forms(value: str) -> set[str]:
    """The value as it may appear, lowercased (hex may be printed in either case): itself, and
    JSON-escaped inside a string."""
    return {value.lower(), json.dumps(value, ensure_ascii=False)[1:-1].lower()}


def leaks(logs: Iterable[Path], secrets: Mapping[str, str]) -> list[str]:
    """`<log file>: <secret label>` for each secret found in each log."""
    found = []
    for path in logs:
        if not path.exists():
            continue
        lowered = path.read_text(errors="replace").lower()
        for label, value in secrets.items():
            if value and any(form in lowered for form in _forms(value)):
                found.append(f"{path.name}: {label}")
    return found


@pytest.fixture(scope="session", autouse=True)
def no_secret_in_any_log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Also the in-process app's lines (the integration tests' ASGI client), at whatever level the
    root logger lets through (tests that look for secrets in caplog lower it to debug)."""
    in_process = tmp_path_factory.mktemp("in-process-logs") / "tests.log"
    handler = logging.FileHandler(in_process, encoding="utf-8")
    handler.setFormatter(JsonFormatter("tests"))
    logging.getLogger().addHandler(handler)
    try:
        yield
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
    leaked = leaks([*SERVICE_LOGS, in_process], SUITE_SECRETS)
    assert leaked == [], f"secrets in process logs: {leaked}"
